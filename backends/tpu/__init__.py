"""Built-in backend for Google Cloud TPU chips (docs/tpu.md)."""

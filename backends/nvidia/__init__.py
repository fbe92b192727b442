"""Built-in NVIDIA GPU backend (GPUs, static and dynamic MIG, time-slicing, NVML health)."""

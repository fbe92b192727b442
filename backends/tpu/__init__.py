"""Built-in tpu backend: not implemented yet (no issue filed for it so far); the directory reserves its place in the layout."""

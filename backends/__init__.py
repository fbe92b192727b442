"""Built-in backends, each registered through the dra_framework.backends entry-point group."""

"""Fake NVML, host presets and host-tree writer for tests and demos without GPUs."""
from .host_tree import write_host_tree
from .nvml import FakeNvml
from .presets import PRESETS

__all__ = ["FakeNvml", "PRESETS", "write_host_tree"]

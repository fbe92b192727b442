"""dra-framework: write and run Kubernetes Dynamic Resource Allocation (DRA) drivers in Python.

Backends implement the hooks in :mod:`dra_framework.hookspecs` with :data:`hookimpl` and produce
the objects in :mod:`dra_framework.model`.
"""
from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]

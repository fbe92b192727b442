"""dra-framework: write and run Kubernetes Dynamic Resource Allocation (DRA) drivers in Python.

Backends import the public backend API from here or from :mod:`dra_framework.api` (the same
names); every other module of the package is internal. The guide is docs/backends.md.
"""
from . import api
from .api import *  # noqa: F401,F403 - the public backend API, listed in api.__all__

__version__ = "0.1.0"
__all__ = [*api.__all__, "__version__"]

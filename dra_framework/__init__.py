"""dra-framework: write and run Kubernetes Dynamic Resource Allocation (DRA) drivers in Python.

Backends import the public backend API from here or from :mod:`dra_framework.api` (the same
names); every other module of the package is internal. The guide is docs/backends.md.

The names are resolved on first use (PEP 562 module ``__getattr__``): ``dra-framework run``
then serves the kubelet sockets before it imports the backend API (docs/operations.md,
"Start-up").
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import api as api
    from .api import *  # noqa: F401,F403 - the public backend API, listed in api.__all__

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name.startswith("__") and name != "__all__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name != "api" and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # a submodule not imported yet: `from dra_framework import cli` asks here first, and
        # then imports it itself (without loading the backend API)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # importlib, not `from . import api`: that looks the name up here first (recursion)
    api = importlib.import_module(".api", __name__)
    if name == "__all__":
        return [*api.__all__, "__version__"]
    if name == "api":
        return api
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *importlib.import_module(".api", __name__).__all__})

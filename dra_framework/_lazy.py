"""Package ``__init__`` modules whose names are imported on first use (PEP 562).

``dra-framework run`` serves the kubelet's registration socket before it imports the heavy
parts (lightkube, the CDI model, backends): a package that re-exports names eagerly would
import them all the moment any of its modules is imported (docs/operations.md, "Start-up").
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, modules: dict[str, list[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that resolve each name of
    ``modules`` (submodule relative to the package, e.g. ``".edits"`` → names it defines) by
    importing that submodule on first access. Unknown names raise AttributeError."""
    where = {name: mod for mod, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        mod = where.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(mod, package), name)

    def __dir__() -> list[str]:
        import sys

        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__

"""Start-up checks of how a plugin uses the hooks, so that mistakes fail loudly and alone.

Without them a misuse is silent or far-reaching: a ``dra_prepare`` without ``@hookimpl`` is never
called (claims "prepare" with no edits), a backend without any decorator "discovers no devices",
and one misnamed module-level hook in one package made pluggy refuse every plugin. Each problem
is one line naming the hook and, for an unknown name, the closest valid one (difflib). The
``dra_`` prefix is reserved for hooks (docs/backends.md, "Hooks").
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any

from . import hookspecs

IMPL_ATTR = hookspecs.PROJECT + "_impl"


def _hook_names(spec: type) -> dict[str, list[str]]:
    """hook name → its argument names (without self)."""
    return {n: list(inspect.signature(f).parameters)[1:] for n, f in vars(spec).items() if n.startswith("dra_")}


BACKEND_HOOKS = _hook_names(hookspecs.BackendSpec)
REGISTRY_HOOKS = _hook_names(hookspecs.RegistrySpec)
#: Hooks every backend implements: without them it publishes nothing or prepares nothing.
REQUIRED = ("dra_discover", "dra_prepare")
#: (a, b, why): implementing a without b leaves something no hook can undo.
PAIRS = (
    ("dra_prepare", "dra_unprepare", "a prepared claim could never be undone"),
    ("dra_create_partition", "dra_destroy_partition", "a created partition could never be destroyed"),
    ("dra_destroy_partition", "dra_create_partition", "the framework creates no partitions for it to destroy"),
)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f" (hooks: {', '.join(sorted(known))})"


def _members(obj: Any) -> dict[str, tuple[Any, dict | None]]:
    """attribute name → (function, hookimpl options or None) for callables, without running
    properties or other descriptors (as pluggy's own discovery does)."""
    out = {}
    for attr in dir(obj):
        try:
            raw = inspect.getattr_static(obj, attr)
        except AttributeError:
            continue
        fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        if not callable(fn) or isinstance(fn, type):
            continue
        opts = getattr(fn, IMPL_ATTR, None)
        if opts is not None or attr.startswith("dra_"):
            out[attr] = (fn, opts if isinstance(opts, dict) else None)
    return out


def _check(obj: Any, known: dict[str, list[str]], other: dict[str, str]) -> tuple[list[str], set[str]]:
    """Problems of ``obj``'s hook implementations and the set of hook names it implements.
    ``other`` maps hook names that belong elsewhere → why they do not belong here."""
    problems: list[str] = []
    implemented: set[str] = set()
    for attr, (fn, opts) in sorted(_members(obj).items()):
        hook = (opts or {}).get("specname") or attr
        if hook in other:
            problems.append(f"{hook} {other[hook]}")
            continue
        if hook not in known:
            if opts is not None or hook.startswith("dra_"):
                problems.append(f"{hook} is not a dra_framework hook{_suggest(hook, list(known))}")
            continue
        if opts is None:
            problems.append(f"{hook} is not marked @hookimpl, so the framework would never call it "
                            f"(decorate it with dra_framework.api.hookimpl)")
            continue
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        if params and params[0].name in ("self", "cls"):  # methods are looked up unbound
            params = params[1:]
        extra = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in known[hook]]
        if extra:
            problems.append(f"{hook} takes {', '.join(extra)}, which the hook does not pass "
                            f"(it passes: {', '.join(known[hook]) or 'nothing'})")
            continue
        implemented.add(hook)
    return problems, implemented


def backend_problems(obj: Any, contract: bool = True) -> list[str]:
    """One line per misuse in a backend class or instance: unknown ``dra_*`` names, hooks not
    marked ``@hookimpl``, arguments the hook does not pass and, with ``contract``, a required
    hook missing or half of a pair."""
    where = "is the module-level registry hook: define it in the entry-point module, not on the backend"
    problems, implemented = _check(obj, BACKEND_HOOKS, {n: where for n in REGISTRY_HOOKS})
    if not contract:
        return problems
    # a hook that is present but misused, or misspelled with a suggestion, is not also "missing"
    seen = implemented | {p.split(" ", 1)[0] for p in problems} | {p.rsplit(" ", 1)[-1].rstrip("?") for p in problems}
    for hook in REQUIRED:
        if hook not in seen:
            problems.append(f"required hook {hook} is missing")
    for a, b, why in PAIRS:
        if a in implemented and b not in seen:
            problems.append(f"{a} is implemented but {b} is not: {why}")
    return problems


def registry_problems(module: Any) -> list[str]:
    """One line per misuse in an entry-point object (normally a module): the registry hook
    missing, not marked, misnamed, or backend hooks defined at module level."""
    where = "is a backend hook: implement it as a method of the backend class, not at module level"
    problems, implemented = _check(module, REGISTRY_HOOKS, {n: where for n in BACKEND_HOOKS})
    if "dra_register_backends" not in implemented and not problems:
        problems.append("has no dra_register_backends hook, so it registers no backend "
                        "(define @hookimpl def dra_register_backends(register))")
    return problems

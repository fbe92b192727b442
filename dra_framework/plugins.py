"""Loading backend plugins: entry points, allow/block lists and per-plugin validation.

Built-in backends are found through the entry-point group ``dra_framework.backends`` exactly like
third-party ones. ``DRA_FRAMEWORK_LOAD_PLUGINS`` (comma list of entry-point names) loads only
those; ``DRA_FRAMEWORK_DISABLE_PLUGINS`` blocks the names it lists.
"""
from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Collection

import pluggy

from . import hookspecs
from .backend import BaseOptions
from .backend_hooks import BackendHooks, await_maybe  # noqa: F401 - re-exported for callers and tests
from .errors import PluginError
from .hookcheck import backend_problems, registry_problems
from .kubenames import dns_label_problem

ENTRY_POINT_GROUP = "dra_framework.backends"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendType:
    """A registered backend type: ``name``, ``factory(options, context)``, its options model,
    and the plugin (entry-point name, distribution and version) that registered it."""

    name: str
    factory: Callable[[Any, Any], object]
    options: type[BaseOptions]
    description: str
    plugin: str
    distribution: str
    version: str


def _env_list(name: str) -> list[str] | None:
    """Comma list from an env var; unset or empty (common in manifests) means no filter."""
    items = [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]
    return items or None


class Registry:
    """All backend types from the loaded entry points.

    A plugin that fails to import, misuses a hook (see :mod:`dra_framework.hookcheck`: a
    misspelled or unmarked hook, a backend class without ``dra_discover``/``dra_prepare``, half
    of a create/destroy or prepare/unprepare pair) or raises while registering is disabled on its
    own: it is listed in :attr:`broken` with one line naming the package and hook (shown by
    ``dra-framework plugins``), and only drivers that use one of its backends fail to start.
    """

    def __init__(self, extra_plugins: dict[str, object] | None = None,
                 backends: Collection[str] | None = None) -> None:
        """``backends``: the backend names a config uses (``dra-framework run``), or None for all.
        With names, the plugins whose entry-point name is one of them (``-`` read as ``_``) are
        imported first, and the others only when a name is still missing, so that a driver does
        not keep every installed backend's code in memory (docs/backends.md, "Which plugins
        load"). Without, every plugin is imported (``plugins``, ``validate``)."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs.RegistrySpec)
        self.types: dict[str, BackendType] = {}
        #: entry-point name → why the plugin is disabled (import error, hook misuse). Reported by
        #: ``plugins`` and raised only when the config uses a backend that is not available.
        self.broken: dict[str, str] = {}
        #: backend name → (why it is unavailable, first plugin) when two plugins register it
        self.conflicts: dict[str, tuple[str, str]] = {}
        allow = _env_list("DRA_FRAMEWORK_LOAD_PLUGINS")
        for blocked in _env_list("DRA_FRAMEWORK_DISABLE_PLUGINS") or []:
            self.pm.set_blocked(blocked)
        self._dists: dict[str, tuple[str, str]] = {}
        #: entry-point name -> why it was not loaded (allow/block list), for error messages
        self.filtered: dict[str, str] = {}
        eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        known = {ep.name for ep in eps}
        for var, names in (("DRA_FRAMEWORK_LOAD_PLUGINS", allow), ("DRA_FRAMEWORK_DISABLE_PLUGINS",
                                                                    _env_list("DRA_FRAMEWORK_DISABLE_PLUGINS"))):
            unknown = sorted(set(names or ()) - known)
            if unknown:
                log.warning("%s names plugins that are not installed: %s (installed: %s)", var,
                            ", ".join(unknown), ", ".join(sorted(known)) or "none")
        for ep in eps:
            if allow is not None and ep.name not in allow:
                self.filtered[ep.name] = "not in DRA_FRAMEWORK_LOAD_PLUGINS"
            elif self.pm.is_blocked(ep.name):
                self.filtered[ep.name] = "blocked by DRA_FRAMEWORK_DISABLE_PLUGINS"
        eps = [ep for ep in eps if ep.name not in self.filtered]
        wanted = None if backends is None else {n.replace("-", "_") for n in backends if isinstance(n, str)}
        first = eps if wanted is None else [ep for ep in eps if ep.name.replace("-", "_") in wanted]
        self._load(first, extra_plugins or {})
        if wanted is not None and not set(backends or ()) <= set(self.types):
            # a backend whose plugin has another name (one plugin may register several): load the rest
            self._load([ep for ep in eps if ep not in first], {})

    def _load(self, eps: list[importlib.metadata.EntryPoint], extra_plugins: dict[str, object]) -> None:
        """Import ``eps``, register them and ``extra_plugins``, and run their registration hook."""
        names: set[str] = set()
        for ep in eps:
            if self.pm.get_plugin(ep.name) is not None or ep.name in self.broken or ep.name in names:
                continue
            names.add(ep.name)
            ep_dist = ep.dist
            self._dists[ep.name] = (ep_dist.metadata["Name"], ep_dist.version) if ep_dist else ("?", "?")
            try:
                plugin = ep.load()
            except Exception as exc:  # one broken package must not take down unrelated drivers
                self._disable(ep.name, self._dists[ep.name], f"failed to import {ep.value}: {exc}")
                continue
            self._register(plugin, ep.name, self._dists[ep.name])
        for name, plugin in extra_plugins.items():
            names.add(name)
            self._dists[name] = ("<inline>", "")
            self._register(plugin, name, self._dists[name])
        for impl in self.pm.hook.dra_register_backends.get_hookimpls():
            if impl.plugin_name not in names:
                continue  # registered by an earlier _load
            dist, version = self._dists.get(impl.plugin_name, ("?", "?"))
            before = set(self.types)
            try:
                impl.function(register=self._registrar(impl.plugin_name, dist, version))
            except Exception as exc:  # noqa: BLE001 - a plugin's bug disables that plugin only
                for added in set(self.types) - before:
                    del self.types[added]
                why = str(exc) if isinstance(exc, PluginError) else f"dra_register_backends raised {type(exc).__name__}: {exc}"
                self._disable(impl.plugin_name, (dist, version), why)

    def _disable(self, name: str, dist: tuple[str, str], why: str) -> None:
        package = f"package {dist[0]} {dist[1]}".rstrip() if dist[0] not in ("?", "<inline>") else "inline"
        self.broken[name] = f"plugin {name!r} ({package}) is disabled: {why}"
        # a driver that uses the plugin fails with this line; `plugins` lists it; others are unaffected
        log.debug("%s", self.broken[name])
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)

    def _register(self, plugin: object, name: str, dist: tuple[str, str]) -> None:
        problems = registry_problems(plugin)
        if problems:
            self._disable(name, dist, "; ".join(problems))
            return
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._disable(name, dist, " ".join(str(exc).split()))

    def _registrar(self, plugin_name: str, dist: str, version: str) -> hookspecs.RegisterBackend:
        def register(name: str, factory: Callable[[Any, Any], object], options: type | None = None,
                     description: str = "") -> None:
            # The name becomes a directory (<stateDir>/<driver>/<name>), a metrics label and a
            # config value: '../x' or 'A B' would leave the driver's state directory.
            problem = dns_label_problem(name) if isinstance(name, str) else "must be a string"
            if problem:
                raise PluginError(f"backend name {name!r} {problem}")
            if name in self.types or name in self.conflicts:
                # Which one would win depends on install order: use neither, say why.
                first = self.types.pop(name).plugin if name in self.types else self.conflicts[name][1]
                self.conflicts[name] = (f"backend {name!r} is registered by both plugin {first!r} and plugin "
                                        f"{plugin_name!r}, so neither is used (uninstall one, or block it with "
                                        f"DRA_FRAMEWORK_DISABLE_PLUGINS)", first)
                raise PluginError(self.conflicts[name][0])
            opts = options or BaseOptions
            if not (isinstance(opts, type) and issubclass(opts, BaseOptions)):
                raise PluginError(f"backend {name!r}: options must subclass dra_framework.api.BaseOptions")
            if not callable(factory):
                raise PluginError(f"backend {name!r}: factory {factory!r} is not callable")
            try:
                inspect.signature(factory).bind(None, None)
            except TypeError:
                raise PluginError(f"backend {name!r}: factory {getattr(factory, '__qualname__', factory)}"
                                  f"{inspect.signature(factory)} cannot be called as factory(options, context)") from None
            except ValueError:
                pass  # no introspectable signature (a builtin): called as it is
            if inspect.isclass(factory):  # a factory function is checked on its instance at start-up
                problems = backend_problems(factory)
                if problems:
                    raise PluginError(f"backend {name!r}: " + "; ".join(problems))
            desc = description or (inspect.getdoc(factory) or "").split("\n")[0]
            self.types[name] = BackendType(name, factory, opts, desc, plugin_name, dist, version)

        return register

    def get(self, name: str) -> BackendType:
        try:
            return self.types[name]
        except KeyError:
            if name in self.conflicts:
                raise PluginError(self.conflicts[name][0]) from None
            if name in self.broken:
                raise PluginError(f"backend {name!r} is not available: {self.broken[name]}") from None
            known = ", ".join(sorted(self.types)) or "none"
            if self.broken:
                known += "; broken: " + "; ".join(self.broken.values())
            if self.filtered:
                known += "; not loaded: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.filtered.items()))
            hint = next((f"; did you mean {t.name!r} (the backend of plugin {t.plugin!r})?"
                         for t in self.types.values() if t.plugin == name and t.name != name), "")
            raise PluginError(f"unknown backend {name!r} (loaded: {known}){hint}") from None

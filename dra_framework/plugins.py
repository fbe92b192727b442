"""Loading backend plugins: entry points, allow/block lists, validation, and a typed facade.

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
from typing import Any, Callable

import pluggy
from . import hookspecs
from .backend import BaseOptions
from .errors import PluginError

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

    Raises PluginError (one line naming the plugin and hook) for a misspelled hook, a hook
    argument not in the spec, or two plugins registering one backend name.
    """

    def __init__(self, extra_plugins: dict[str, object] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs.RegistrySpec)
        self.types: dict[str, BackendType] = {}
        #: entry-point name → import error, for plugins that failed to import. Reported by
        #: ``plugins`` and raised only when the config uses a backend that is not available.
        self.broken: dict[str, str] = {}
        allow = _env_list("DRA_FRAMEWORK_LOAD_PLUGINS")
        for blocked in _env_list("DRA_FRAMEWORK_DISABLE_PLUGINS") or []:
            self.pm.set_blocked(blocked)
        dists: dict[str, tuple[str, str]] = {}
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
                continue
            if self.pm.is_blocked(ep.name):
                self.filtered[ep.name] = "blocked by DRA_FRAMEWORK_DISABLE_PLUGINS"
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # one broken package must not take down unrelated drivers
                self.broken[ep.name] = f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}"
                continue
            self._register(plugin, ep.name)
            dist = ep.dist
            dists[ep.name] = (dist.metadata["Name"], dist.version) if dist else ("?", "?")
        for name, plugin in (extra_plugins or {}).items():
            self._register(plugin, name)
            dists[name] = ("<inline>", "")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(_one_line(self.pm.get_name(exc.plugin) or "?", exc)) from None
        for impl in self.pm.hook.dra_register_backends.get_hookimpls():
            dist, version = dists.get(impl.plugin_name, ("?", "?"))
            impl.function(register=self._registrar(impl.plugin_name, dist, version))

    def _register(self, plugin: object, name: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(_one_line(name, exc)) from None

    def _registrar(self, plugin_name: str, dist: str, version: str) -> hookspecs.RegisterBackend:
        def register(name: str, factory: Callable[[Any, Any], object], options: type | None = None,
                     description: str = "") -> None:
            if name in self.types:
                raise PluginError(f"backend {name!r} registered twice (plugins {self.types[name].plugin!r} and {plugin_name!r})")
            opts = options or BaseOptions
            if not (isinstance(opts, type) and issubclass(opts, BaseOptions)):
                raise PluginError(f"backend {name!r}: options must subclass dra_framework.api.BaseOptions")
            desc = description or (inspect.getdoc(factory) or "").split("\n")[0]
            self.types[name] = BackendType(name, factory, opts, desc, plugin_name, dist, version)

        return register  # type: ignore[return-value]

    def get(self, name: str) -> BackendType:
        try:
            return self.types[name]
        except KeyError:
            known = ", ".join(sorted(self.types)) or "none"
            if self.broken:
                known += "; broken: " + "; ".join(self.broken.values())
            if self.filtered:
                known += "; not loaded: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.filtered.items()))
            raise PluginError(f"unknown backend {name!r} (loaded: {known})") from None


def _one_line(name: str, exc: pluggy.PluginValidationError, what: str = "plugin") -> str:
    """pluggy's messages embed the plugin's repr, often several lines long; keep the first clause."""
    text = " ".join(str(exc).split())
    text = text.split(" in plugin ")[0].split(" for plugin ")[0]
    return f"{what} {name!r}: {text}"


async def await_maybe(value: Any) -> Any:
    """pluggy does not await coroutines: hooks may be ``async def``, so await their results."""
    if inspect.isawaitable(value):
        return await value
    return value


class BackendHooks:
    """A typed facade over one backend instance's plugin manager; every call awaits coroutines."""

    def __init__(self, name: str, instance: object) -> None:
        self.name = name
        self.instance = instance
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs.BackendSpec)
        try:
            self.pm.register(instance, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(_one_line(name, exc, "backend")) from None

    def implements(self, hook: str) -> bool:
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    async def call(self, hook: str, **kwargs: Any) -> Any:
        caller = getattr(self.pm.hook, hook)
        result = caller(**kwargs)
        if isinstance(result, list):  # broadcast hook: await each implementation's result
            return [await await_maybe(r) for r in result]
        return await await_maybe(result)

"""Building a composed driver: backend instances from the config, and their merged inventory."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from pydantic import ValidationError

from .admin_attributes import apply_admin_attributes
from .cdi.policy import CdiPolicy
from .backend import BackendContext
from .config import DriverConfig, Settings
from .validation_errors import format_validation_error
from .errors import ConfigError, HookError, PluginError
from .model import Device, Inventory, Pool
from .plugins import BackendHooks, Registry

log = logging.getLogger(__name__)


@dataclass
class BackendInstance:
    """One ``drivers[i].backends[j]`` entry, instantiated. ``key`` is unique within the driver
    (the backend name, suffixed with the index when a driver uses one backend twice)."""

    key: str
    type_name: str
    hooks: BackendHooks
    context: BackendContext
    device_attributes: list = field(default_factory=list)
    #: What its CDI edits may do (``cdi.policy``): the backend's default with the config's
    #: ``cdiPolicy`` fields applied.
    cdi_policy: CdiPolicy = field(default_factory=CdiPolicy)
    #: Option name -> host path its CDI edits always name, checked to exist at build time.
    static_host_paths: dict = field(default_factory=dict)


@dataclass
class DriverInventory:
    """The merged discovery result of one driver: pools by name (None = node pool), and which
    backend owns each (pool, device)."""

    pools: dict[str | None, Pool] = field(default_factory=dict)
    owner: dict[tuple[str | None, str], str] = field(default_factory=dict)

    def device(self, pool: str | None, name: str) -> Device | None:
        p = self.pools.get(pool)
        if p is None:
            return None
        for d in p.devices:
            if d.name == name:
                return d
        return None


def _resolve_relative_paths(options: Any, base: Path | None) -> Any:
    """Options read from a config file: a relative ``hostRoot`` or ``Path`` option is resolved
    against the file's folder (``base``), so a config works from any working directory."""
    if base is None:
        return options
    update = {}
    for name, f in type(options).model_fields.items():
        value = getattr(options, name)
        is_path = name == "host_root" or f.annotation in (Path, Path | None)
        if is_path and isinstance(value, (str, Path)) and str(value) and not os.path.isabs(value):
            update[name] = type(value)(base / value)
    return options.model_copy(update=update) if update else options


def _one_line(exc: BaseException) -> str:
    """A backend's exception text with line breaks folded (errors are one line, docs/config.md)."""
    return " ".join(str(exc).split())


def build_backends(settings: Settings, index: int, driver: DriverConfig, registry: Registry) -> list[BackendInstance]:
    """Instantiate the backends of ``drivers[index]``. Raises ConfigError naming the field for bad
    options, PluginError for an unknown backend or an invalid backend object."""
    out: list[BackendInstance] = []
    names = [b.name for b in driver.backends]
    src = settings._source
    for j, bc in enumerate(driver.backends):
        where = f"{src}: drivers[{index}].backends[{j}]"
        try:
            btype = registry.get(bc.name)
        except PluginError as exc:
            raise ConfigError(f"{where}.name: {exc}") from None
        try:
            options = btype.options.model_validate(bc.options)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, prefix=f"drivers[{index}].backends[{j}].options",
                                                      source=src, model=btype.options)) from None
        options = _resolve_relative_paths(options, settings._config_dir)
        # Host paths every CDI spec of this backend will name (docs/cdi.md): checked once here.
        missing = [f"{where}.options.{name}: {path} does not exist under hostRoot {options.host_root}"
                   for name, path in options.static_host_paths().items()
                   if not os.path.lexists(Path(options.host_root) / path.lstrip("/"))]
        if missing:
            raise ConfigError("\n".join(missing))
        key = bc.name if names.count(bc.name) == 1 else f"{bc.name}-{j}"
        ctx = BackendContext(
            driver_name=driver.name,
            node_name=settings.node_name,
            host_root=Path(options.host_root),
            state_dir=settings.state_dir / driver.name / key,
            cdi_root=settings.cdi_root,
            backend_name=key,
            logger=logging.getLogger(f"dra_framework.backend.{key}"),
        )
        try:
            instance = btype.factory(options, ctx)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{where}: backend {bc.name!r} cannot start: {_one_line(exc)}") from None
        except Exception as exc:  # a backend bug: still name the backend, in one line
            log.debug("factory of backend %s failed", bc.name, exc_info=True)
            raise PluginError(f"{where}: backend {bc.name!r} cannot start: {type(exc).__name__}: "
                              f"{_one_line(exc)}") from None
        try:
            hooks = BackendHooks(f"{driver.name}/{key}", instance)
            problems = hooks.contract_problems()
        except PluginError as exc:
            raise PluginError(f"{where}: {exc}") from None
        if problems:
            raise PluginError(f"{where}: backend {bc.name!r}: " + "; ".join(problems))
        out.append(BackendInstance(key, bc.name, hooks, ctx, device_attributes=list(bc.device_attributes),
                                   cdi_policy=options.default_cdi_policy().overlay(bc.cdi_policy),
                                   static_host_paths=dict(options.static_host_paths())))
    return out


async def discover(backends: list[BackendInstance]) -> DriverInventory:
    """Run ``dra_discover`` on each backend and merge the pools. A device name that two backends
    both publish in one pool raises PluginError naming both (names must be unique in a pool).

    The node pool is always in the result, empty when no backend found a device: an empty pool
    is published as one slice without devices, which tells the scheduler the driver runs and has
    nothing, while a missing pool deletes the slices (the Go ``resourceslice.Pool.Slices`` contract,
    docs/resourceslices.md, "Empty pools"). Backends declare other pools they manage with
    ``inventory.pool(name)`` so that those, too, stay published when they become empty."""
    merged = DriverInventory()
    merged.pools[None] = Pool(name=None)
    for b in backends:
        inv = Inventory()
        try:
            await b.hooks.discover(inv)
        except HookError:
            raise
        except Exception as exc:  # a backend bug or missing hardware: name it, keep one line
            log.debug("dra_discover of backend %s failed", b.key, exc_info=True)
            raise PluginError(f"driver {b.context.driver_name} backend {b.key}: dra_discover failed: "
                              f"{type(exc).__name__}: {_one_line(exc)}") from None
        apply_admin_attributes(b.context.driver_name, b.key, inv, b.device_attributes)
        if not any(pool.devices for pool in inv.pools):
            # Success with nothing found is how a misconfigured backend looks (wrong driver root,
            # a code path that drops its devices): say so instead of publishing empty slices
            # silently (docs/failure-modes.md#backend-that-discovers-nothing).
            log.warning("backend %s discovered no devices: its pools are published without devices; "
                        "check its options (hostRoot %s, driver root) and the node's hardware", b.key,
                        b.context.host_root)
        for pool in inv.pools:
            target = merged.pools.setdefault(pool.name, Pool(name=pool.name, selection=pool.selection))
            for dev in pool.devices:
                other = merged.owner.get((pool.name, dev.name))
                if other is not None:
                    where = f"pool {pool.name!r}" if pool.name else "the node pool"
                    raise PluginError(f"device {dev.name!r} in {where} published by both backends {other!r} and {b.key!r}")
                merged.owner[(pool.name, dev.name)] = b.key
                target.devices.append(dev)
            target.counter_sets.extend(pool.counter_sets)
    return merged

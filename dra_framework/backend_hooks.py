"""Typed calls into one backend instance: one method per hook, results checked.

The engine, composition, health hub and runtime call backends only through :class:`BackendHooks`.
Each method awaits ``async def`` hooks (pluggy does not), returns the documented default when an
optional hook is not implemented, and checks the result's type: a wrong one raises
:class:`~dra_framework.errors.HookError` naming the backend and hook ("backend
gpu.example.com/acc: dra_prepare returned dict, expected PrepareResult") instead of failing later
far from the cause.
"""
from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import pluggy

from . import hookspecs
from .backend import PrepareContext
from .cdi.edits import ContainerEdits
from .errors import HookError, PluginError
from .hookcheck import backend_problems
from .model import (AllocatedDevice, DeviceStatus, HealthReport, Inventory, OpaqueConfig, PreparedDeviceEdits,
                    PrepareResult, StoredClaim)

log = logging.getLogger("dra_framework.backend")


async def await_maybe(value: Any) -> Any:
    """pluggy does not await coroutines: hooks may be ``async def``, so await their results."""
    if inspect.isawaitable(value):
        return await value
    return value


def _one_line(name: str, exc: pluggy.PluginValidationError, what: str = "plugin") -> str:
    """pluggy's messages embed the plugin's repr, often several lines long; keep the first clause."""
    text = " ".join(str(exc).split())
    text = text.split(" in plugin ")[0].split(" for plugin ")[0]
    return f"{what} {name!r}: {text}"


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


class BackendHooks:
    """The hooks of one backend instance, registered in a plugin manager of its own.

    ``name`` labels errors (``<driver>/<backend key>``). Construction refuses, with a
    PluginError naming the hook, an unknown ``dra_*`` name (with the closest valid one), a
    ``dra_*`` method not marked ``@hookimpl`` and an argument the hook does not pass.
    :meth:`contract_problems` adds the checks for a backend that serves a driver (required
    hooks, pairs); ``build_backends`` applies them.
    """

    def __init__(self, name: str, instance: object) -> None:
        self.name = name
        self.instance = instance
        problems = backend_problems(instance, contract=False)
        if problems:
            raise HookError(f"backend {name!r}: " + "; ".join(problems))
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs.BackendSpec)
        try:
            self.pm.register(instance, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(_one_line(name, exc, "backend")) from None

    def contract_problems(self) -> list[str]:
        """Every misuse :func:`~dra_framework.hookcheck.backend_problems` finds, required hooks and
        half-implemented pairs included."""
        return backend_problems(self.instance)

    def implements(self, hook: str) -> bool:
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    async def call(self, hook: str, **kwargs: Any) -> Any:
        """Untyped call of any hook (broadcast hooks give a list); the typed methods below are
        what the framework uses. Each call is logged at debug (``-v``) with its duration."""
        caller = getattr(self.pm.hook, hook)
        t0 = time.perf_counter()
        failed = ""
        try:
            result = caller(**kwargs)
            if isinstance(result, list):  # broadcast hook: await each implementation's result
                return [await await_maybe(r) for r in result]
            return await await_maybe(result)
        except SystemExit as exc:
            # A backend must not end the daemon (or a CLI command) through sys.exit(): it is an
            # error of this backend's hook like any other.
            failed = f" (failed: SystemExit: {exc.code})"
            raise HookError(f"backend {self.name}: {hook} called sys.exit({exc.code!r})") from None
        except BaseException as exc:
            failed = f" (failed: {type(exc).__name__}: {exc})"
            raise
        finally:
            if log.isEnabledFor(logging.DEBUG):
                seconds = time.perf_counter() - t0
                log.debug("backend %s: %s took %.3f s%s", self.name, hook, seconds, failed,
                          extra={"backend": self.name, "hook": hook, "seconds": round(seconds, 4)})

    def _error(self, hook: str, what: str) -> HookError:
        return HookError(f"backend {self.name}: {hook} {what}")

    # --- one method per hook ----------------------------------------------------------------

    async def discover(self, inventory: Inventory) -> None:
        """``dra_discover``: fills ``inventory``. A returned value means the backend returned its
        devices instead of adding them, which would publish nothing: HookError."""
        for result in await self.call("dra_discover", inventory=inventory):
            if result is not None:
                raise self._error("dra_discover", f"returned {_kind(result)}: add devices with "
                                                  f"inventory.add_device(...) instead (the return value is ignored)")

    async def config_types(self) -> list[type[OpaqueConfig]]:
        """``dra_config_types``: the OpaqueConfig subclasses accepted ([] when not implemented)."""
        out: list[type[OpaqueConfig]] = []
        for result in await self.call("dra_config_types"):
            if result is None:
                continue
            if isinstance(result, (str, bytes, Mapping)) or not isinstance(result, Sequence | set | frozenset):
                raise self._error("dra_config_types", f"returned {_kind(result)}, expected a list of OpaqueConfig subclasses")
            for t in result:
                if not (isinstance(t, type) and issubclass(t, OpaqueConfig)):
                    raise self._error("dra_config_types", f"returned {t!r}, which is not an OpaqueConfig subclass")
                for cv in ("api_version", "kind"):
                    if not isinstance(getattr(t, cv, None), str):
                        raise self._error("dra_config_types", f"returned {t.__name__} without a {cv} class variable")
                out.append(t)
        return out

    async def validate_config(self, config: OpaqueConfig, device: AllocatedDevice) -> bool | None:
        """``dra_validate_config``: None/True apply, False skip; ValueError from the hook passes through."""
        if not self.implements("dra_validate_config"):
            return None
        result = await self.call("dra_validate_config", config=config, device=device)
        if result is not None and not isinstance(result, bool):
            raise self._error("dra_validate_config", f"returned {_kind(result)}, expected True, False or None")
        return result

    async def create_partition(self, ctx: PrepareContext, device: AllocatedDevice) -> Mapping[str, Any] | None:
        """``dra_create_partition``: the partition record, or None (not a partition / not implemented)."""
        if not self.implements("dra_create_partition"):
            return None
        result = await self.call("dra_create_partition", ctx=ctx, device=device)
        if result is not None and not isinstance(result, Mapping):
            raise self._error("dra_create_partition", f"returned {_kind(result)}, expected a dict (the partition "
                                                       f"record) or None")
        return result

    async def prepare(self, ctx: PrepareContext, devices: Sequence[AllocatedDevice]) -> PrepareResult:
        """``dra_prepare``: a PrepareResult whose parts have the documented types and whose
        ``devices`` keys are devices of this call."""
        result = await self.call("dra_prepare", ctx=ctx, devices=devices)
        hook = "dra_prepare"
        if not isinstance(result, PrepareResult):
            raise self._error(hook, f"returned {_kind(result)}, expected PrepareResult"
                                    + (" (return PrepareResult() when there is nothing to inject)" if result is None else ""))
        if not isinstance(result.devices, Mapping):
            raise self._error(hook, f"returned PrepareResult.devices as {_kind(result.devices)}, expected a dict "
                                    f"device name → PreparedDeviceEdits")
        names = {d.name for d in devices}
        for dev, pd in result.devices.items():
            where = f"returned PrepareResult.devices[{dev!r}]"
            if dev not in names:
                raise self._error(hook, f"{where}, but {dev!r} is not a device of this call "
                                        f"(devices: {', '.join(sorted(names))})")
            if not isinstance(pd, PreparedDeviceEdits):
                raise self._error(hook, f"{where} as {_kind(pd)}, expected PreparedDeviceEdits")
            if not isinstance(pd.edits, ContainerEdits):
                raise self._error(hook, f"{where}.edits as {_kind(pd.edits)}, expected ContainerEdits")
            if pd.status is not None and not isinstance(pd.status, DeviceStatus):
                raise self._error(hook, f"{where}.status as {_kind(pd.status)}, expected DeviceStatus or None")
        if result.claim_edits is not None and not isinstance(result.claim_edits, ContainerEdits):
            raise self._error(hook, f"returned PrepareResult.claim_edits as {_kind(result.claim_edits)}, "
                                    f"expected ContainerEdits or None")
        if not isinstance(result.teardown, Mapping):
            raise self._error(hook, f"returned PrepareResult.teardown as {_kind(result.teardown)}, expected a dict")
        return result

    async def unprepare(self, stored: StoredClaim) -> None:
        """``dra_unprepare`` (the return value is ignored)."""
        if self.implements("dra_unprepare"):
            await self.call("dra_unprepare", stored=stored)

    async def destroy_partition(self, record: Mapping[str, Any]) -> None:
        """``dra_destroy_partition`` (the return value is ignored)."""
        if self.implements("dra_destroy_partition"):
            await self.call("dra_destroy_partition", record=record)

    async def reconcile_partitions(self, owned: Sequence[Mapping[str, Any]]) -> None:
        """``dra_reconcile_partitions`` (optional; the return value is ignored)."""
        if self.implements("dra_reconcile_partitions"):
            await self.call("dra_reconcile_partitions", owned=owned)

    async def watch_health(self, report: Callable[[HealthReport], None]) -> None:
        """``dra_watch_health``: runs the health source(s) until they return or raise."""
        await self.call("dra_watch_health", report=report)

    async def shutdown(self) -> None:
        """``dra_shutdown`` (optional)."""
        await self.call("dra_shutdown")

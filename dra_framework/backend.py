"""Objects the framework hands to backends: options base class, construction context, prepare context."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from .cdi.policy import CdiPolicy
from .model import ClaimInfo


class BaseOptions(BaseModel):
    """Options every backend takes; a backend's options class subclasses it.

    Validated strictly from ``drivers[].backends[].options`` in the config: an unknown key or a
    wrong type fails start-up with an error naming the config field. Use ``Field(alias=...)`` for
    camelCase keys (``memoryGiB``) and ``Field(description=...)`` to document them.

    - ``host_root`` (``hostRoot``, default ``/``): where the host's ``/sys``, ``/dev`` and
      ``/proc`` are found; given to the backend as ``BackendContext.host_root``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host_root: str = Field("/", alias="hostRoot", description="Where /sys, /dev and /proc of the host are found.")

    def default_cdi_policy(self) -> CdiPolicy:
        """What this backend's CDI edits may do unless the admin sets ``cdiPolicy`` (docs/cdi.md).
        The framework default: character devices under ``/dev``, no host mounts, no hooks, no
        ``LD_*`` env. Override to declare what the backend really needs, as narrowly as it can."""
        return CdiPolicy()

    def static_host_paths(self) -> dict[str, str]:
        """Host paths the backend's CDI edits will name whatever the claim, by option name
        (``{"nvidiaCdiHookPath": "/usr/bin/nvidia-cdi-hook"}``): checked under ``hostRoot`` at
        start-up and by ``dra-framework validate``. Default: none."""
        return {}


@dataclass
class BackendContext:
    """Given to a backend factory together with its validated options.

    - ``driver_name``: the DRA driver (DNS subdomain) this instance serves.
    - ``node_name``: the Kubernetes node.
    - ``host_root``: where the host's /sys, /dev and /proc are found (``/`` on a real node, a
      sample-host directory in tests).
    - ``state_dir``: a private, persistent directory for this backend instance.
    - ``cdi_root``: the CDI spec directory (for backends that need to know it).
    - ``backend_name``: the key of this instance in its driver (the backend name, suffixed with
      its index when one driver uses a backend twice).
    - ``logger``: a logger named after the backend instance.
    - ``on_rediscovery``: the callback :meth:`request_rediscovery` calls. The framework sets it
      for a running driver; a test harness may set its own. Backends never set it.
    """

    driver_name: str
    node_name: str
    host_root: Path
    state_dir: Path
    cdi_root: Path
    backend_name: str = ""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("dra_framework.backend"))
    on_rediscovery: Callable[[], None] | None = field(default=None, repr=False)

    def request_rediscovery(self) -> None:
        """Ask the framework to call ``dra_discover`` again and republish the ResourceSlices (for
        example after a hot-plug or a device falling off the bus). Safe to call from any thread;
        requests made while one is pending are coalesced. Does nothing (logged at debug level)
        when the context belongs to no running driver."""
        if self.on_rediscovery is None:
            self.logger.debug("rediscovery requested but no driver is attached to this context")
            return
        self.on_rediscovery()

    def host_path(self, path: str | Path) -> Path:
        """Map an absolute host path (``/sys/bus/pci``) under ``host_root``
        (``<host_root>/sys/bus/pci``), for reading sysfs, ``/dev`` and ``/proc``."""
        return self.host_root / str(path).lstrip("/")


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it (so per-claim and
    per-device locks do not pile up over a node's lifetime)."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        slot = self._locks.get(key)
        if slot is None:
            slot = self._locks[key] = [asyncio.Lock(), 0]
        slot[1] += 1
        try:
            async with slot[0]:
                yield
        finally:
            slot[1] -= 1
            if slot[1] == 0:
                self._locks.pop(key, None)

    def busy(self, key: str) -> bool:
        return key in self._locks


#: Named locks, one per physical device, shared by all claims of a driver.
DeviceLocks = KeyedLocks


@dataclass
class PrepareContext:
    """Given to ``dra_create_partition`` and ``dra_prepare`` for one claim.

    - ``claim``: the :class:`~dra_framework.model.ClaimInfo` being prepared.
    - ``backend_name``: the backend instance's key in its driver.
    - ``journal``: the entries recorded so far (key → JSON value).
    - ``partitions``: device name → the record ``dra_create_partition`` returned.
    - ``on_record``: what :meth:`record` awaits to persist an entry; the framework's writes the
      checkpoint (atomically, fsynced). None (unit tests) keeps entries in ``journal`` only.
    - ``locks``: the per-device locks shared by all claims of the driver (:meth:`lock`).

    A backend's unit test builds one as ``PrepareContext(ClaimInfo(uid, namespace, name))``.
    """

    claim: ClaimInfo
    backend_name: str = ""
    journal: dict[str, Any] = field(default_factory=dict)
    partitions: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    on_record: Callable[[str, Any], Awaitable[None]] | None = field(default=None, repr=False)
    locks: KeyedLocks = field(default_factory=KeyedLocks, repr=False)

    async def record(self, key: str, value: Any) -> None:
        """Persist ``value`` (JSON-serialisable) under ``key`` in this claim's journal; when it
        returns, the entry survives a crash. Call it before the side effect it announces, so
        ``dra_unprepare`` can undo it from ``StoredClaim.journal``."""
        self.journal[key] = value
        if self.on_record is not None:
            await self.on_record(key, value)

    def lock(self, device: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialise work on ``device`` (any string naming a physical resource) across claims:
        ``async with ctx.lock("card-0"): ...``."""
        return self.locks.hold(device)

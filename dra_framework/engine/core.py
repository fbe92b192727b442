"""The state and ordering machinery the engine's flows share: per-claim queue, cross-process
claim lock, deadlines, dropping work at shutdown, and the small helpers every flow uses.

:class:`EngineCore` is the base of :class:`dra_framework.engine.engine.PrepareEngine`; the flows
(:mod:`.startup`, :mod:`.prepare`, :mod:`.teardown`) are its subclasses' methods.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from ..backend import DeviceLocks
from ..blocking_io import BlockingIO
from ..cdi.edits import ContainerEdits
from ..composition import BackendInstance, DriverInventory
from ..errors import HookError
from ..killpoints import killpoint
from ..kubelet.types import CALL_DEADLINE, ClaimRef, PreparedDevice, PrepareOutcome
from .checkpoint import Checkpoint, CheckpointError
from .claim_lock import ClaimQueue, Turn, claim_flock
from .configs import ConfigTypes, decode_stored
from .entry import ClaimEntry, PartitionEntry, PreparedRecord
from .interfaces import ClaimError, ClaimGetter, ClaimSpecWriter, EngineMetrics, NullMetrics, StatusWriter
from .planning import DeviceIndex

log = logging.getLogger("dra_framework.engine")


class EngineCore:
    """Constructor arguments and shared state of the engine (see :class:`PrepareEngine`)."""

    def __init__(self, driver_name: str, *, backends: Sequence[BackendInstance],
                 inventory: DriverInventory | Callable[[], DriverInventory], checkpoint: Checkpoint,
                 cdi: ClaimSpecWriter, node_name: str, get_claim: ClaimGetter,
                 write_status: StatusWriter | None = None, metrics: EngineMetrics | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.driver_name = driver_name
        self.backends = list(backends)
        self._by_key = {b.key: b for b in self.backends}
        self._cdi_notes: set[tuple[str, str]] = set()
        self._inventory = inventory
        self.checkpoint = checkpoint
        self.cdi = cdi
        self.node_name = node_name
        self.get_claim = get_claim
        self.write_status = write_status
        self.metrics: EngineMetrics = metrics or NullMetrics()
        self.log = logger or log
        self.config_types = ConfigTypes({})
        self.device_locks = DeviceLocks()
        self._queue = ClaimQueue()
        self._droppable: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._index = DeviceIndex()
        #: CDI spec writes and removals: inline while fast (tmpfs), in a thread while fsync is slow
        self.cdi_io = BlockingIO("cdi")
        # A lone claim's commits run inline even on a disk; its CDI spec write, which overlaps the
        # PrepareCompleted commit, stays in a thread there.
        checkpoint.inline_while_alone(lambda: self._queue.claims() <= 1)
        #: claim uid → (backend, device) whose dra_create_partition returned None in this process
        self._nonparts: dict[str, set[tuple[str, str]]] = {}

    # --- state --------------------------------------------------------------------------------

    @property
    def inventory(self) -> DriverInventory:
        inv = self._inventory
        return inv() if callable(inv) else inv

    @inventory.setter
    def inventory(self, value: DriverInventory | Callable[[], DriverInventory]) -> None:
        self._inventory = value

    def is_busy(self, uid: str) -> bool:
        """Whether an operation on claim ``uid`` is running or queued in this process."""
        return self._queue.busy(uid)

    def physically_prepared(self, entry: ClaimEntry) -> bool:
        """False when the entry was written during an earlier boot of the node. Entries without
        a boot id (or when the current boot id is unknown) count as prepared in this boot."""
        return entry.from_this_boot(self.checkpoint.boot_id)

    def prepared_claim_count(self) -> int:
        return sum(1 for e in self.checkpoint.claims.values() if e.completed and e.unprepare_started is None)

    def stored_configs(self, uid: str) -> dict[str, list[Any]]:
        """Device name → the configs that applied to it at prepare, decoded leniently from the
        checkpoint (unknown newer fields dropped; unknown kinds as raw mappings)."""
        entry = self.checkpoint.get(uid)
        if entry is None:
            return {}
        return {d.device: [decode_stored(p, self.config_types) for p in d.configs] for d in entry.devices}

    async def start(self) -> None:  # implemented in .startup
        raise NotImplementedError

    async def _teardown(self, entry: ClaimEntry) -> None:  # implemented in .teardown
        raise NotImplementedError

    # --- ordering, deadlines, shutdown ------------------------------------------------------------

    def _spawn(self, fn: Callable[[ClaimRef, Turn, float | None], Awaitable[Any]], ref: ClaimRef,
               deadline: float | None) -> asyncio.Task[Any]:
        """Start one claim operation. It takes its place in the claim's queue at once (before any
        await), so operations on one claim UID run one at a time in arrival order, the API fetch
        included. Until it commits to a side effect (:meth:`_commit`) it can be dropped: when
        ``deadline`` passes first, or at shutdown (:meth:`drain`). Each runs in its own task,
        shielded from the caller's cancellation, so it is never left half-done in memory."""
        turn = self._queue.enqueue(ref.uid)
        task = asyncio.ensure_future(fn(ref, turn, deadline))
        self._tasks.add(task)
        self._droppable.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._droppable.discard)
        task.add_done_callback(lambda _t: turn.release())  # also when cancelled before it ran
        return task

    def drop_pending(self) -> None:
        """Shutdown, first step: answer every claim operation that has not changed anything yet
        (queued or fetching; also those arriving from now on until :meth:`drain` ends) with a
        "shutting down" error at once; the kubelet retries with the next instance."""
        self._closing = True
        for task in list(self._droppable):
            task.cancel()

    async def drain(self) -> None:
        """Shutdown: :meth:`drop_pending`, then wait for the operations already changing node
        state. Afterwards the engine accepts work again."""
        self.drop_pending()
        try:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            self._closing = False  # operations started later run normally

    def _commit(self, label: str, deadline: float | None) -> None:
        """Called right before an operation's first side effect: from here on it runs to the end.
        Raises ClaimError("deadline"/"shutdown") when it must be dropped instead."""
        if self._closing:
            raise ClaimError("shutdown", f"claim {label}: dropped: the driver is shutting down; nothing was "
                                         "changed (the kubelet retries)")
        if deadline is not None and time.monotonic() >= deadline:
            raise ClaimError("deadline", late(label))
        task = asyncio.current_task()
        if task is not None:
            self._droppable.discard(task)

    @contextlib.asynccontextmanager
    async def _turn_locked(self, uid: str, turn: Turn, deadline: float | None, label: str) -> AsyncIterator[None]:
        """Wait for ``turn``, take the cross-process lock of the claim (rolling updates: two driver
        pods share this node's checkpoint) and refresh the checkpoint, all before ``deadline``
        (else ClaimError("deadline")); both are released on exit."""
        async with contextlib.AsyncExitStack() as held:
            held.callback(turn.release)
            try:
                async with until(deadline):
                    await turn.wait()
                    await held.enter_async_context(claim_flock(self.checkpoint.directory, uid))
                    await self.checkpoint.refresh()
            except TimeoutError:
                raise ClaimError("deadline", late(label)) from None
            yield

    @contextlib.asynccontextmanager
    async def _hold_claim(self, uid: str) -> AsyncIterator[None]:
        """The claim's turn without a deadline (start-up, janitor). Callers refresh the
        checkpoint after taking it."""
        turn = self._queue.enqueue(uid)
        try:
            await turn.wait()
            async with claim_flock(self.checkpoint.directory, uid):
                yield
        finally:
            turn.release()

    def _dropped(self, exc: BaseException, label: str) -> ClaimError | None:
        """The ClaimError for an operation cancelled by :meth:`drain` before it committed."""
        task = asyncio.current_task()
        if not (self._closing and isinstance(exc, asyncio.CancelledError) and task in self._droppable):
            return None
        if task is not None:
            task.uncancel()
        return ClaimError("shutdown", f"claim {label}: dropped: the driver is shutting down; nothing was "
                                      "changed (the kubelet retries)")

    # --- shared helpers -------------------------------------------------------------------------

    async def _backend_call(self, b: BackendInstance, hook: str, label: str, call: Awaitable[Any]) -> Any:
        try:
            result = await call
        except ClaimError:
            raise
        except HookError as exc:  # a wrong result: the message already names backend and hook
            raise ClaimError("backend", f"claim {label}: {exc}") from None
        except Exception as exc:
            raise ClaimError("backend", f"claim {label}: backend {b.key}: {hook}: {exc}") from None
        killpoint(f"after {hook} {b.key}")
        return result

    async def _cp(self, aw: Awaitable[Any], label: str) -> Any:
        try:
            return await aw
        except CheckpointError as exc:
            raise ClaimError("checkpoint", f"claim {label}: {exc}") from None

    async def _ensure_cdi(self, entry: ClaimEntry) -> dict[tuple[str, str | None], str]:
        """Rewrite the claim's CDI spec from the entry unless it matches; (device, share id) → ID."""
        devices = [(d.device, d.share_id, ContainerEdits.from_cdi(d.edits)) for d in entry.cdi_devices or ()]
        if not devices:
            return {}
        claim_edits = ContainerEdits.from_cdi(entry.cdi_claim_edits) if entry.cdi_claim_edits else None
        ids = await self.cdi_io.run(self.cdi.ensure_claim_spec, entry.uid, devices, claim_edits)
        return {(d, s): i for (d, s, _), i in zip(devices, ids, strict=True)}

    def _remove_spec(self, uid: str) -> None:
        """Remove the claim's CDI spec; a failure counts only while the file is still there (a
        read-only directory refuses to unlink even a file that was never written)."""
        try:
            self.cdi.remove_claim_spec(uid)
        except OSError:
            if not _spec_gone(self.cdi, uid):
                raise

    def _log_done(self, what: str, ref: ClaimRef, t0: float, devices: Sequence[PreparedDevice], note: str = "") -> None:
        """One info line per finished prepare/unprepare (also as JSON fields with --log-format json)."""
        seconds = time.perf_counter() - t0
        names = [f"{d.pool}/{d.device}" + (f"#{d.share_id}" if d.share_id else "") for d in devices]
        ids = [i for d in devices for i in d.cdi_device_ids]
        self.log.info("%s claim %s/%s (%s) in %.3f s%s: devices [%s], CDI IDs [%s]", what, ref.namespace, ref.name,
                      ref.uid, seconds, note, ", ".join(names), ", ".join(ids),
                      extra={"claim": f"{ref.namespace}/{ref.name}", "claimUID": ref.uid,
                             "seconds": round(seconds, 4), "devices": ",".join(names), "cdiIDs": ",".join(ids)})

    def _log_failed(self, what: str, ref: ClaimRef, t0: float, exc: ClaimError) -> None:
        seconds = time.perf_counter() - t0
        self.log.warning("%s of claim %s/%s (%s) failed after %.3f s: %s", what, ref.namespace, ref.name, ref.uid,
                         seconds, strip_label(exc, f"{ref.namespace}/{ref.name}"),
                         extra={"claim": f"{ref.namespace}/{ref.name}", "claimUID": ref.uid,
                                "seconds": round(seconds, 4), "reason": exc.reason})


def is_nonpart(part: PartitionEntry, nonparts: set[tuple[str, str]]) -> bool:
    """A pending entry whose ``dra_create_partition`` returned None: the device is no partition."""
    return part.pending and (part.backend, part.device) in nonparts


def _spec_gone(cdi: ClaimSpecWriter, uid: str) -> bool:
    try:
        return not os.path.lexists(cdi.claim_spec_path(uid))
    except (AttributeError, OSError, ValueError):
        return False


def call_deadline(deadline: float | None) -> float | None:
    return CALL_DEADLINE.get() if deadline is None else deadline


def until(deadline: float | None) -> asyncio.Timeout:
    """``asyncio.timeout_at`` for a ``time.monotonic()`` deadline (None: no limit)."""
    if deadline is None:
        return asyncio.timeout_at(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + (deadline - time.monotonic()))


def late(label: str) -> str:
    return (f"claim {label}: dropped: the caller's deadline passed while it waited (for earlier operations on "
            "the claim or for the API server); nothing was changed (the kubelet retries)")


def strip_label(exc: Exception, label: str) -> str:
    """The message of ``exc`` without its leading ``claim <label>: ``."""
    msg = str(exc)
    prefix = f"claim {label}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def outcome(prepared: Sequence[PreparedRecord]) -> PrepareOutcome:
    return PrepareOutcome(devices=[
        PreparedDevice(requests=list(d.requests), pool=d.pool, device=d.device,
                       cdi_device_ids=list(d.cdi_device_ids), share_id=d.share_id)
        for d in prepared])


__all__ = ["EngineCore", "call_deadline", "is_nonpart", "late", "outcome", "strip_label", "until"]

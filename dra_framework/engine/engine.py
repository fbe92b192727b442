"""PrepareEngine: NodePrepareResources / NodeUnprepareResources for one driver.

Implements :class:`dra_framework.kubelet.types.DRAEngine`. All state is keyed by claim UID and kept in the driver's :class:`~dra_framework.engine.checkpoint.Checkpoint`; teardown
needs nothing but the checkpoint.

Ordering: every operation on a claim UID takes its place in that claim's queue the moment its
call arrives and runs when the ones before it have finished (arrival order, the API fetch
included), so an Unprepare never overtakes a Prepare that is still fetching its claim: after an
Unprepare answers success nothing of the claim is left unless a later Prepare re-created it.
Claims of one call, and different claims, run concurrently. An operation whose caller's deadline
(``deadline=``, or :data:`~dra_framework.kubelet.types.CALL_DEADLINE` of the gRPC call) passes
before its first side effect is dropped with an error (the kubelet retries); so is one still
queued or fetching at shutdown (:meth:`PrepareEngine.drain`). See docs/operations.md.

Prepare, per claim:

1. a completed entry from this boot → re-ensure its CDI spec and return the stored devices,
   without fetching the claim (idempotent: a claim shared by several pods is prepared once);
2. fetch the ResourceClaim by namespace/name (injectable getter), check UID and allocation; an
   interrupted (``PrepareStarted``), half-unprepared or earlier-boot entry is rolled back first;
3. map each allocation result of this driver to its device and owning backend, resolve and
   strictly decode the opaque configs, ``dra_validate_config`` (before any side effect);
4. checkpoint ``PrepareStarted`` (name, namespace, backends, devices, empty journal, a
   *pending* partition entry per device of each backend that creates partitions), atomically
   with the check that no other checkpointed claim holds one of the devices exclusively;
5. per backend: ``dra_create_partition`` per device (never for an admin-access result, see
   docs/backends.md; ``ctx.record`` calls during it also land in the pending entry; the returned
   record replaces it), ``dra_prepare``;
6. write the CDI claim spec; write driver-owned device status when a backend returned any;
7. checkpoint ``PrepareCompleted`` (teardown, CDI data, prepared devices).

Any failure rolls back that claim only (``dra_unprepare(completed=False)`` from the journal, then
``dra_destroy_partition`` per partition entry, pending ones included (:func:`partition_record`),
CDI spec removed) and yields a per-claim error;
every requested claim gets an entry. Each claim runs in its own task shielded from the caller's
cancellation, so a kubelet timeout never leaves a claim half-done in memory.

Unprepare: unknown UID → success; otherwise mark the entry ``unprepareStarted`` (so a teardown
that fails or dies half-way is never reused as prepared: the next prepare rolls it back and
redoes the claim), ``dra_unprepare`` then ``dra_destroy_partition`` per partition (skipped when
the node rebooted since), remove the CDI spec and the entry. Errors keep the entry (minus
partitions already destroyed) so the kubelet retries.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

from ..backend import DeviceLocks, KeyedLocks, PrepareContext
from ..cdi.edits import ContainerEdits, merge
from ..cdi.errors import CdiError
from ..cdi.names import claim_device_name, parse_claim_device_name
from ..cdi.policy import CdiPolicy, check_edits
from ..fsutil import remove_stale_temp_files
from ..slices.convert import model_pool_name
from ..killpoints import killpoint
from ..composition import BackendInstance, DriverInventory
from ..errors import HookError
from ..kubelet.types import CALL_DEADLINE, ClaimRef, PreparedDevice, PrepareOutcome
from ..model import AllocatedDevice, ClaimInfo, DeviceStatus, OpaqueConfig, PrepareResult, StoredClaim
from .claim_lock import ClaimQueue, Turn, claim_flock
from .checkpoint import PREPARE_COMPLETED, PREPARE_STARTED, Checkpoint, CheckpointError
from .configs import ConfigError, ConfigTypes, decode_stored, decode_strict, driver_configs, resolve

log = logging.getLogger("dra_framework.engine")

#: A claim whose CDI spec survived a lost checkpoint (see PrepareEngine._adopt_orphan_specs).
RECOVERED = "Recovered"
#: State of a partition entry written before ``dra_create_partition`` runs (see partition_record).
PARTITION_PENDING = "pending"

#: ``async get_claim(namespace, name)`` → the ResourceClaim as a resource.k8s.io/v1 dict, or
#: None when it does not exist (404). Raise for any other failure.
ClaimGetter = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
#: ``async write_status(claim, devices)``: server-side apply ``status.devices`` (entries
#: ``{driver, pool, device, shareID?, conditions, data, networkData}``) of the claim with the
#: driver as field manager; an empty list removes the driver's entries.
StatusWriter = Callable[[ClaimInfo, list[dict[str, Any]]], Awaitable[None]]


class EngineMetrics(Protocol):
    """The metrics sink the engine reports to (``dra_framework.metrics.DriverMetrics`` fits)."""

    def observe_prepare(self, seconds: float, error_reason: str | None = None) -> None: ...
    def observe_unprepare(self, seconds: float, error_reason: str | None = None) -> None: ...
    def inflight(self, delta: int, operation: str = "prepare") -> None: ...
    def set_prepared_claims(self, n: int) -> None: ...


class NullMetrics:
    def observe_prepare(self, seconds: float, error_reason: str | None = None) -> None:
        pass

    def observe_unprepare(self, seconds: float, error_reason: str | None = None) -> None:
        pass

    def inflight(self, delta: int, operation: str = "prepare") -> None:
        pass

    def set_prepared_claims(self, n: int) -> None:
        pass


class ClaimError(Exception):
    """A per-claim failure: ``reason`` is a short metric label (fetch, not_found, uid_mismatch,
    not_allocated, unknown_device, config, device_in_use, backend, cdi, status, checkpoint,
    rollback, unprepare, deadline, shutdown); the message names the claim."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _json_copy(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from None


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Planned:
    """One allocation result of this driver, resolved."""

    result: Mapping[str, Any]
    allocated: AllocatedDevice
    backend: str
    exclusive: bool
    configs: list[tuple[Any, OpaqueConfig]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.allocated.pool, self.allocated.name)


class PrepareEngine:
    """Prepares and unprepares the claims of one driver.

    - ``driver_name``: the DRA driver name (results of other drivers are ignored).
    - ``backends``: the driver's :class:`BackendInstance` list (order = prepare order; teardown
      runs in reverse).
    - ``inventory``: the merged :class:`DriverInventory`, or a zero-argument callable returning
      the current one (after rediscovery); also settable as ``engine.inventory``.
    - ``checkpoint``: the driver's :class:`Checkpoint`.
    - ``cdi``: a :class:`dra_framework.cdi.CdiWriter` for the driver's vendor/class.
    - ``node_name``: the node; allocation results in pool ``node_name`` map to the driver's
      default node pool (``None`` in the inventory).
    - ``get_claim``: :data:`ClaimGetter` (default in ``claims_api.lightkube_claim_getter``).
    - ``write_status``: :data:`StatusWriter` or None (device status is then not written).
    - ``metrics``: an :class:`EngineMetrics`; ``logger``: defaults to ``dra_framework.engine``.
    """

    def __init__(self, driver_name: str, *, backends: Sequence[BackendInstance],
                 inventory: DriverInventory | Callable[[], DriverInventory], checkpoint: Checkpoint,
                 cdi: Any, node_name: str, get_claim: ClaimGetter,
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
        self._index: tuple[DriverInventory, int, dict[tuple[str | None, str], Any]] | None = None
        self._nonparts: dict[str, set[tuple[str, str]]] = {}

    # --- properties --------------------------------------------------------------------------

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

    def physically_prepared(self, entry: Mapping[str, Any]) -> bool:
        """False when the entry was written during an earlier boot of the node. Entries without
        a boot id (or when the current boot id is unknown) count as prepared in this boot."""
        cur, then = self.checkpoint.boot_id, entry.get("bootId") or ""
        return not (cur and then and cur != then)

    def prepared_claim_count(self) -> int:
        return sum(1 for e in self.checkpoint.claims.values()
                   if e.get("state") == PREPARE_COMPLETED and not e.get("unprepareStarted"))

    def stored_configs(self, uid: str) -> dict[str, list[Any]]:
        """Device name → the configs that applied to it at prepare, decoded leniently from the
        checkpoint (unknown newer fields dropped; unknown kinds as raw mappings)."""
        entry = self.checkpoint.get(uid) or {}
        return {d["device"]: [decode_stored(p, self.config_types) for p in d.get("configs", [])]
                for d in entry.get("devices", [])}

    # --- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the checkpoint and reconcile node state; never raises for state problems
        (they are logged): temp files of interrupted writes are removed, a lost (corrupt or
        missing) checkpoint keeps the claim CDI specs as ``Recovered`` claims, entries from an
        earlier boot are cleaned (hardware teardown skipped),
        completed claims get their CDI spec rewritten if missing, CDI claim specs without an
        entry are removed, and each backend's ``dra_reconcile_partitions`` gets the partition
        records checkpointed claims own."""
        async with self._start_lock:
            if self._started:
                return
            await self.checkpoint.load()
            await self._remove_stale_temp_files()
            if self.checkpoint.problems or not self.checkpoint.existed_at_load:
                await self._adopt_orphan_specs(missing=not self.checkpoint.existed_at_load)
            by_backend: dict[str, list[type[OpaqueConfig]]] = {}
            for b in self.backends:
                by_backend[b.key] = await b.hooks.config_types()
            self.config_types = ConfigTypes(by_backend)
            await self._reconcile_at_start()
            self._started = True
            self.metrics.set_prepared_claims(self.prepared_claim_count())

    async def _reconcile_at_start(self) -> None:
        for uid, entry in list(self.checkpoint.claims.items()):
            if self.physically_prepared(entry):
                continue
            try:
                async with self._hold_claim(uid):
                    await self._teardown(entry)
                self.log.info("claim %s/%s (%s) was prepared before the node rebooted: cleaned up",
                              entry.get("namespace"), entry.get("name"), uid)
            except Exception as exc:
                self.log.warning("cleaning up claim %s from an earlier boot failed (kept for retry): %s", uid, exc)
        for uid, entry in list(self.checkpoint.claims.items()):
            if entry.get("state") == PREPARE_COMPLETED and not entry.get("unprepareStarted"):
                try:
                    await self._ensure_cdi(entry)
                except Exception as exc:
                    self.log.error("claim %s: cannot restore its CDI spec: %s", uid, exc)
        await self.sweep_stale_cdi_specs()
        try:
            await asyncio.to_thread(self.cdi.remove_stale_temp_files)
        except Exception as exc:
            self.log.error("cannot remove stale CDI temp files: %s", exc)
        for b in self.backends:
            owned = [partition_record(p) for e in self.checkpoint.claims.values() if self.physically_prepared(e)
                     for p in e.get("partitions", []) if isinstance(p, Mapping) and p.get("backend") == b.key]
            try:
                await b.hooks.reconcile_partitions(owned)
            except Exception as exc:
                self.log.error("backend %s: dra_reconcile_partitions failed (driver keeps serving): %s", b.key, exc)

    async def _remove_stale_temp_files(self) -> None:
        """Temp files of writes a crash interrupted: the checkpoint's directory and every
        backend's state directory (the CDI directory is cleaned in _reconcile_at_start)."""
        dirs = [(self.checkpoint.directory, False)]
        dirs += [(str(b.context.state_dir), True) for b in self.backends if getattr(b, "context", None) is not None]
        for d, recursive in dirs:
            try:
                for path in await asyncio.to_thread(remove_stale_temp_files, d, recursive=recursive):
                    self.log.info("removed %s, left by an interrupted write", path)
            except Exception as exc:
                self.log.error("cannot remove stale temp files in %s: %s", d, exc)

    async def _adopt_orphan_specs(self, missing: bool = False) -> None:
        """The checkpoint was unusable and moved aside, or is gone (``missing``), so claim CDI
        specs without an entry may belong to claims the kubelet still runs containers of:
        deleting them would make every container (re)start fail while the kubelet believes the
        claim prepared. Keep each such spec and record the claim as ``Recovered``: it holds no
        devices, a prepare redoes it from scratch (the entry counts as interrupted), and its
        unprepare removes the spec. The devices named in the spec that belong to a backend which
        creates partitions are kept as pending partitions (``recovered``), so the start-up
        reconcile counts their partitions as owned instead of tearing them down under a running
        pod. The backends' teardown data went with the old checkpoint and cannot be replayed.
        A missing checkpoint with such specs is reported like a corrupt one."""
        try:
            spec_uids = await asyncio.to_thread(self.cdi.list_claim_spec_uids)
        except OSError as exc:
            self.log.error("cannot list the CDI directory: %s", exc)
            return
        orphans = [u for u in spec_uids if u not in self.checkpoint.claims]
        if not orphans:
            return
        if missing:
            self.checkpoint.report_problem(
                "missing", f"checkpoint {self.checkpoint.path} is missing, but CDI specs of {len(orphans)} prepared "
                           f"claim(s) exist ({', '.join(orphans)}); treating it as lost, not as a fresh node")
        parts = {uid: await self._recovered_partitions(uid) for uid in orphans}

        def adopt(claims: dict[str, dict[str, Any]]) -> None:
            for uid in orphans:
                claims.setdefault(uid, {"uid": uid, "namespace": "", "name": "", "state": RECOVERED,
                                        "bootId": self.checkpoint.boot_id, "backends": [], "devices": [],
                                        "journal": {}, "partitions": parts[uid]})
        try:
            await self.checkpoint.update(adopt)
        except CheckpointError as exc:
            self.log.error("cannot record claims recovered from CDI specs: %s", exc)
            return
        self.log.warning("checkpoint lost: kept the CDI specs of %d claim(s) the kubelet may still use (%s); "
                         "their backend teardown data is lost", len(orphans), ", ".join(orphans))

    async def _recovered_partitions(self, uid: str) -> list[dict[str, Any]]:
        """Pending partition entries for the devices named in claim ``uid``'s CDI spec."""
        try:
            ids = await asyncio.to_thread(self.cdi.read_claim_spec_ids, uid) or []
            inv = self.inventory
        except Exception as exc:
            self.log.warning("claim %s: cannot tell its devices from its CDI spec: %s", uid, exc)
            return []
        owners = {name: key for (_, name), key in inv.owner.items()}
        out: list[dict[str, Any]] = []
        for qid in ids:
            try:
                _, device, _ = parse_claim_device_name(qid.rpartition("=")[2])
            except ValueError:
                continue
            key = owners.get(device)
            b = self._by_key.get(key) if key else None
            if b is None or not b.hooks.implements("dra_create_partition"):
                continue
            part = {"backend": key, "device": device, "state": PARTITION_PENDING, "journal": {}, "recovered": True}
            if part not in out:
                out.append(part)
        return out

    async def sweep_stale_cdi_specs(self) -> list[str]:
        """Remove CDI claim specs of this driver whose claim has no checkpoint entry (and no
        operation in flight here). Lists the directory *before* re-reading the checkpoint: an
        entry is always committed before its spec is written, also by another driver process, so
        a spec written meanwhile is never mistaken for a stale one. Returns the removed UIDs;
        never raises."""
        removed: list[str] = []
        try:
            spec_uids = await asyncio.to_thread(self.cdi.list_claim_spec_uids)
            await self.checkpoint.refresh()
            for uid in spec_uids:
                if uid not in self.checkpoint.claims and not self.is_busy(uid):
                    await asyncio.to_thread(self.cdi.remove_claim_spec, uid)
                    removed.append(uid)
                    self.log.info("removed stale CDI claim spec of unknown claim %s", uid)
        except Exception as exc:
            self.log.error("cannot reconcile the CDI directory: %s", exc)
        return removed

    # --- kubelet API --------------------------------------------------------------------------

    async def prepare(self, claims: list[ClaimRef], deadline: float | None = None) -> dict[str, PrepareOutcome]:
        """NodePrepareResources: one outcome per distinct claim UID. ``deadline``: when the caller
        stops waiting, as a ``time.monotonic()`` value (default: :data:`CALL_DEADLINE`, set by the
        gRPC servicer). See :meth:`_spawn` for ordering and dropping."""
        if not self._started:
            await self.start()
        refs = list({c.uid: c for c in claims}.values())
        tasks = [self._spawn(self._prepare_one, ref, _deadline(deadline)) for ref in refs]
        outs = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        return {ref.uid: out if isinstance(out, PrepareOutcome) else
                PrepareOutcome(error=f"claim {ref.namespace}/{ref.name}: internal error: {out!r}")
                for ref, out in zip(refs, outs)}

    async def unprepare(self, claims: list[ClaimRef], deadline: float | None = None) -> dict[str, str]:
        """NodeUnprepareResources: claim UID → "" or an error (the kubelet retries). ``deadline``
        as for :meth:`prepare`."""
        if not self._started:
            await self.start()
        refs = list({c.uid: c for c in claims}.values())
        tasks = [self._spawn(self._unprepare_one, ref, _deadline(deadline)) for ref in refs]
        outs = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        return {ref.uid: out if isinstance(out, str) else f"claim {ref.namespace}/{ref.name}: internal error: {out!r}"
                for ref, out in zip(refs, outs)}

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
            raise ClaimError("deadline", _late(label))
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
                async with _until(deadline):
                    await turn.wait()
                    await held.enter_async_context(claim_flock(self.checkpoint.directory, uid))
                    await self.checkpoint.refresh()
            except TimeoutError:
                raise ClaimError("deadline", _late(label)) from None
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

    # --- prepare ------------------------------------------------------------------------------

    async def _prepare_one(self, ref: ClaimRef, turn: Turn, deadline: float | None) -> PrepareOutcome:
        t0 = time.perf_counter()
        self.metrics.inflight(1, "prepare")
        reason: str | None = None
        label = f"{ref.namespace}/{ref.name}"
        try:
            async with self._turn_locked(ref.uid, turn, deadline, label):
                entry = self.checkpoint.get(ref.uid)
                if entry is not None and entry.get("state") == PREPARE_COMPLETED and self.physically_prepared(entry) \
                        and not entry.get("unprepareStarted"):
                    # Prepared already (a claim shared by several pods, a kubelet restart): the
                    # allocation of a claim UID never changes while it is prepared, so no fetch.
                    self._commit(label, deadline)
                    out = await self._reuse(entry, label)
                    self._log_done("prepared", ref, t0, out.devices, " (prepared already)")
                    return out
                try:
                    async with _until(deadline):
                        obj = await self._fetch(ref)
                except TimeoutError:
                    raise ClaimError("deadline", _late(label)) from None
                self._commit(label, deadline)
                out = await self._prepare_locked(ref, obj)
                self._log_done("prepared", ref, t0, out.devices)
                return out
        except (ClaimError, asyncio.CancelledError) as exc:
            # A cancellation is either dropped work (an answer for the kubelet) or a real one.
            err = exc if isinstance(exc, ClaimError) else self._dropped(exc, label)
            if err is None:
                raise
            reason = err.reason
            self._log_failed("prepare", ref, t0, err)
            return PrepareOutcome(error=str(err))
        except Exception as exc:
            reason = "internal"
            self.log.exception("prepare of claim %s/%s (%s) failed", ref.namespace, ref.name, ref.uid)
            return PrepareOutcome(error=f"claim {ref.namespace}/{ref.name}: internal error: {exc}")
        finally:
            self.metrics.inflight(-1, "prepare")
            self.metrics.observe_prepare(time.perf_counter() - t0, reason)

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
                         seconds, _strip(exc, f"{ref.namespace}/{ref.name}"),
                         extra={"claim": f"{ref.namespace}/{ref.name}", "claimUID": ref.uid,
                                "seconds": round(seconds, 4), "reason": exc.reason})

    async def _fetch(self, ref: ClaimRef) -> Mapping[str, Any]:
        label = f"{ref.namespace}/{ref.name}"
        try:
            obj = await self.get_claim(ref.namespace, ref.name)
        except Exception as exc:
            raise ClaimError("fetch", f"claim {label}: cannot get the ResourceClaim: "
                                      f"{str(exc) or type(exc).__name__}") from None
        if obj is None:
            raise ClaimError("not_found", f"claim {label}: ResourceClaim not found")
        uid = (obj.get("metadata") or {}).get("uid")
        if uid != ref.uid:
            raise ClaimError("uid_mismatch", f"claim {label}: the ResourceClaim got replaced: its UID is {uid}, "
                                             f"the kubelet asked for {ref.uid}")
        if not ((obj.get("status") or {}).get("allocation")):
            raise ClaimError("not_allocated", f"claim {label}: not allocated")
        return obj

    async def _prepare_locked(self, ref: ClaimRef, obj: Mapping[str, Any]) -> PrepareOutcome:
        info = ClaimInfo(ref.uid, ref.namespace, ref.name)
        label = f"{ref.namespace}/{ref.name}"
        entry = self.checkpoint.get(ref.uid)
        if entry is not None:
            why = ("from an earlier boot" if not self.physically_prepared(entry) else
                   "half-unprepared" if entry.get("unprepareStarted") else "interrupted")
            self.log.info("claim %s (%s): rolling back an %s prepare first", label, ref.uid, why)
            try:
                await self._teardown(entry)
            except ClaimError as exc:
                raise ClaimError("rollback", f"claim {label}: rolling back an earlier {why} prepare failed: "
                                             f"{_strip(exc, label)}") from None
        plan = self._plan(info, obj, label)
        if not plan:
            return PrepareOutcome()
        await self._validate_configs(plan, label)
        await self._write_started(info, plan, label)
        try:
            outcome = await self._run(info, plan, label)
        except BaseException as exc:
            err = exc if isinstance(exc, ClaimError) else ClaimError(
                "backend" if isinstance(exc, Exception) else "cancelled", f"claim {label}: {exc}")
            current = self.checkpoint.get(ref.uid)
            if current is not None:
                try:
                    await self._teardown(current)
                except Exception as rb:  # never lose the original error
                    detail = _strip(rb, label) if isinstance(rb, ClaimError) else str(rb)
                    err = ClaimError(err.reason, f"{err}; {self._rollback_note(ref.uid)}: {detail}")
            if not isinstance(exc, Exception):
                raise
            raise err from None
        finally:
            self._nonparts.pop(ref.uid, None)
        self.metrics.set_prepared_claims(self.prepared_claim_count())
        return outcome

    def _rollback_note(self, uid: str) -> str:
        if self.checkpoint.get(uid) is not None:
            return "rollback failed (kept; retried by the next prepare or unprepare of the claim, or the janitor)"
        return "rollback incomplete (the leftover CDI spec is removed by the janitor)"

    def _plan(self, info: ClaimInfo, obj: Mapping[str, Any], label: str) -> list[_Planned]:
        alloc = obj["status"]["allocation"]
        results = [r for r in ((alloc.get("devices") or {}).get("results") or []) if r.get("driver") == self.driver_name]
        if not results:
            return []
        entries = driver_configs(alloc, self.driver_name)
        try:
            decoded = {e.index: decode_strict(e, self.config_types, label) for e in entries}
        except ConfigError as exc:
            raise ClaimError("config", str(exc)) from None
        inv = self.inventory
        index = self._device_index(inv)
        plan: list[_Planned] = []
        for r in results:
            pool, name, request = str(r.get("pool", "")), str(r.get("device", "")), str(r.get("request", ""))
            # Published pool names map back to the backend's (None = node pool, "<node>/<name>"
            # for named node-local pools; see slices.convert.published_pool_name).
            pool_key: str | None = pool
            device = index.get((pool, name))
            if device is None:
                pool_key = model_pool_name(pool, self.node_name)
                device = index.get((pool_key, name))
            backend_key = inv.owner.get((pool_key, name)) if device is not None else None
            if device is None or backend_key is None:
                raise ClaimError("unknown_device", f"claim {label}: device {name!r} in pool {pool!r} is not published "
                                                   f"by driver {self.driver_name} on this node (removed, or never here)")
            if backend_key not in self._by_key:
                raise ClaimError("unknown_device", f"claim {label}: device {name!r} belongs to backend "
                                                   f"{backend_key!r}, which is not configured")
            base, _, sub = request.partition("/")
            try:
                cfgs = resolve(entries, decoded, request, backend_key, self.config_types, label, name)
            except ConfigError as exc:
                raise ClaimError("config", str(exc)) from None
            admin = bool(r.get("adminAccess"))
            allocated = AllocatedDevice(
                request=base, pool=pool, device=device, subrequest=request if sub else None,
                admin_access=admin, share_id=r.get("shareID") or None,
                consumed_capacity=dict(r.get("consumedCapacity") or {}), configs=tuple(c for _, c in cfgs))
            plan.append(_Planned(r, allocated, backend_key, not (admin or device.allow_multiple_allocations), cfgs))
        return plan

    def _device_index(self, inv: DriverInventory) -> dict[tuple[str | None, str], Any]:
        """(pool key, device name) → Device, rebuilt when the inventory object changes."""
        cached = self._index
        if cached is not None and cached[0] is inv and cached[1] == sum(len(p.devices) for p in inv.pools.values()):
            return cached[2]
        index = {(key, d.name): d for key, p in inv.pools.items() for d in p.devices}
        self._index = (inv, len(index), index)
        return index

    async def _validate_configs(self, plan: list[_Planned], label: str) -> None:
        for p in plan:
            hooks = self._by_key[p.backend].hooks
            if not p.configs or not hooks.implements("dra_validate_config"):
                continue
            kept = []
            for entry, cfg in p.configs:
                try:
                    applies = await hooks.validate_config(cfg, p.allocated)
                except HookError as exc:
                    raise ClaimError("backend", f"claim {label}: {exc}") from None
                except ValueError as exc:
                    raise ClaimError("config", f"claim {label}: device {p.allocated.name}: {entry.label}: {exc}") from None
                if applies is False:
                    # A claim- or class-wide config of another device type is skipped; one that
                    # names this device's request was meant for it, so it is an error.
                    if entry.requests:
                        raise ClaimError("config", f"claim {label}: device {p.allocated.name}: {entry.label}: "
                                                   f"cannot be applied to this device")
                    continue
                kept.append((entry, cfg))
            if len(kept) != len(p.configs):
                p.configs = kept
                p.allocated = dataclasses.replace(p.allocated, configs=tuple(c for _, c in kept))

    async def _write_started(self, info: ClaimInfo, plan: list[_Planned], label: str) -> None:
        order = [b.key for b in self.backends if any(p.backend == b.key for p in plan)]
        devices = [{"backend": p.backend, "request": p.allocated.subrequest or p.allocated.request,
                    "pool": p.allocated.pool, "device": p.allocated.name, "shareId": p.allocated.share_id,
                    "adminAccess": p.allocated.admin_access, "exclusive": p.exclusive,
                    "configs": [dict(e.parameters) for e, _ in p.configs]} for p in plan]
        # Every device of a backend that creates partitions gets a pending partition entry in the
        # same write: a crash inside dra_create_partition then still leaves a record to destroy.
        pending = [{"backend": k, "device": name, "state": PARTITION_PENDING, "journal": {}}
                   for k in order if self._by_key[k].hooks.implements("dra_create_partition")
                   for name in dict.fromkeys(p.allocated.name for p in plan
                                             if p.backend == k and not p.allocated.admin_access)]
        entry = {"uid": info.uid, "namespace": info.namespace, "name": info.name, "state": PREPARE_STARTED,
                 "bootId": self.checkpoint.boot_id, "startedAt": time.time(), "backends": order,
                 "devices": devices, "journal": {}, "partitions": pending}
        mine = {(d["pool"], d["device"]) for d in devices if d["exclusive"]}
        uid, boot = info.uid, self.checkpoint.boot_id

        def start(claims: dict[str, dict[str, Any]]) -> None:
            if mine:
                for other_uid, other in claims.items():
                    if other_uid == uid:
                        continue
                    then = other.get("bootId") or ""
                    if boot and then and then != boot:
                        continue  # prepared before a reboot: holds nothing now
                    for d in other.get("devices", []):
                        if d.get("exclusive", True) and (d.get("pool"), d.get("device")) in mine:
                            state = "prepared" if other.get("state") == PREPARE_COMPLETED else "being prepared"
                            raise ClaimError(
                                "device_in_use",
                                f"claim {label}: device {d.get('device')!r} (pool {d.get('pool')!r}) is already "
                                f"{state} for claim {other.get('namespace')}/{other.get('name')} ({other_uid}); "
                                "it becomes available when that claim is unprepared")
            claims[uid] = entry

        try:
            await self.checkpoint.update(start)
        except CheckpointError as exc:
            raise ClaimError("checkpoint", f"claim {label}: {exc}") from None
        killpoint("prepare-started")

    async def _record(self, uid: str, backend: str, key: str, value: Any, creating: str | None = None) -> None:
        """Journal ``key`` = ``value`` for ``backend``; while ``dra_create_partition`` of device
        ``creating`` runs, also into that device's pending partition entry (same write)."""
        stored = _json_copy(value, f"journal entry {key!r}")

        def fn(claims: dict[str, dict[str, Any]]) -> None:
            e = claims.get(uid)
            if e is None:
                raise CheckpointError(f"claim {uid} vanished from the checkpoint during prepare")
            journal = dict(e.get("journal") or {})
            journal[backend] = {**(journal.get(backend) or {}), key: stored}
            new = {**e, "journal": journal}
            if creating is not None:
                new["partitions"] = [{**p, "journal": {**(p.get("journal") or {}), key: stored}}
                                     if _is_pending(p, backend, creating) else p for p in e.get("partitions", [])]
            claims[uid] = new
        killpoint(f"before-record {backend} {key}")
        await self.checkpoint.update(fn)
        killpoint(f"record {backend} {key}")

    async def _run(self, info: ClaimInfo, plan: list[_Planned], label: str) -> PrepareOutcome:
        uid = info.uid
        results: dict[str, PrepareResult] = {}
        # (backend, device) whose dra_create_partition returned None: a rollback in this process
        # skips their pending entries (see _teardown).
        nonparts = self._nonparts.setdefault(uid, set())
        for b in self.backends:
            devs = [p.allocated for p in plan if p.backend == b.key]
            if not devs:
                continue
            partitions: dict[str, Mapping[str, Any]] = {}
            creating: list[str | None] = [None]  # the device whose dra_create_partition runs

            admin_only = all(d.admin_access for d in devs)

            async def record(key: str, value: Any, _b: str = b.key, _c: list[str | None] = creating,
                             _admin: bool = admin_only) -> None:
                if _admin:  # a journal entry announces a side effect: admin access may make none
                    raise ClaimError("backend", f"claim {label}: backend {_b}: ctx.record({key!r}) for admin-access "
                                                "devices: admin access must not change a device (docs/backends.md)")
                await self._record(uid, _b, key, value, _c[0])
            ctx = PrepareContext(claim=info, backend_name=b.key, journal={}, partitions=partitions,
                                 on_record=record, locks=self.device_locks)
            if b.hooks.implements("dra_create_partition"):
                seen: set[str] = set()
                for d in devs:
                    if d.name in seen or d.admin_access:  # admin access never creates (or destroys)
                        continue
                    seen.add(d.name)
                    creating[0] = d.name
                    try:
                        rec = await self._backend_call(b, "dra_create_partition", label,
                                                       b.hooks.create_partition(ctx, d))
                    finally:
                        creating[0] = None
                    if rec is None:  # not a partition: its pending entry goes with the next write
                        nonparts.add((b.key, d.name))
                        continue
                    rec = _json_copy(dict(rec), f"partition record of device {d.name!r}")

                    def add(claims: dict[str, dict[str, Any]], _b: str = b.key, _d: str = d.name,
                            _r: dict[str, Any] = rec) -> None:
                        e = claims[uid]
                        done = {"backend": _b, "device": _d, "record": _r}
                        parts = [done if _is_pending(p, _b, _d) else p for p in e.get("partitions", [])
                                 if not _is_nonpart(p, nonparts)]
                        if done not in parts:
                            parts.append(done)
                        claims[uid] = {**e, "partitions": parts}
                    await self._cp(self.checkpoint.update(add), label)
                    killpoint(f"partition-recorded {b.key} {d.name}")
                    partitions[d.name] = rec
            results[b.key] = await self._backend_call(b, "dra_prepare", label, b.hooks.prepare(ctx, devs))

        # CDI: one device per (device, share id), in allocation order.
        cdi_devices: list[tuple[str, str | None, ContainerEdits]] = []
        seen_cdi: set[tuple[str, str | None]] = set()
        for p in plan:
            k = (p.allocated.name, p.allocated.share_id)
            if k in seen_cdi:
                continue
            seen_cdi.add(k)
            pd = results[p.backend].devices.get(p.allocated.name)
            cdi_devices.append((k[0], k[1], pd.edits if pd is not None and pd.edits is not None else ContainerEdits()))
        self._check_edits(plan, results, label)
        claim_edits_list = [(f"backend {k}", r.claim_edits) for k, r in results.items() if r.claim_edits is not None]
        try:
            claim_edits = merge(claim_edits_list) if claim_edits_list else None
            id_of = {(d, s): self.cdi.qualified(claim_device_name(uid, d, s)) for d, s, _ in cdi_devices}
        except (CdiError, ValueError) as exc:
            raise ClaimError("cdi", f"claim {label}: building the CDI spec failed: {exc}") from None
        status_entries = self._status_entries(plan, results)
        prepared = _prepared(plan, id_of)
        teardown = {k: _json_copy(dict(r.teardown or {}), f"backend {k}: teardown") for k, r in results.items()}
        cdi_stored = {"devices": [{"device": d, "shareId": s, "edits": e.to_cdi()} for d, s, e in cdi_devices],
                      "claimEdits": claim_edits.to_cdi() if claim_edits is not None else None}

        # The CDI spec is written while the remaining checkpoint updates commit: both orders are
        # crash-safe (a completed claim without its spec gets it back at start-up and on the
        # kubelet's retry; a spec without a completed entry is removed by the rollback), and it
        # saves one fsync'd write of latency. A rollback only starts once the write has ended.
        cdi_write = asyncio.ensure_future(asyncio.to_thread(self.cdi.write_claim_spec, uid, cdi_devices, claim_edits))
        try:
            if status_entries and self.write_status is not None:
                def mark(claims: dict[str, dict[str, Any]]) -> None:
                    claims[uid] = {**claims[uid], "statusWritten": True}
                await self._cp(self.checkpoint.update(mark), label)
                try:
                    await self.write_status(info, status_entries)
                except Exception as exc:
                    raise ClaimError("status", f"claim {label}: writing ResourceClaim.status.devices failed: {exc}") from None

            def complete(claims: dict[str, dict[str, Any]]) -> None:
                e = claims[uid]
                claims[uid] = {**e, "state": PREPARE_COMPLETED, "completedAt": time.time(),
                               "teardown": teardown, "cdi": cdi_stored, "prepared": prepared,
                               # what is still pending now are devices that are no partitions
                               "partitions": [p for p in e.get("partitions", [])
                                              if p.get("state") != PARTITION_PENDING]}
            killpoint("before prepare-completed")  # the CDI spec may or may not be written yet
            await self._cp(self.checkpoint.update(complete), label)
        finally:
            await asyncio.wait([cdi_write])
        killpoint("prepare-completed")
        exc = cdi_write.exception()
        if exc is not None:
            raise ClaimError("cdi", f"claim {label}: writing the CDI spec failed: {exc}") from None
        return _outcome(prepared)

    def _check_edits(self, plan: list[_Planned], results: dict[str, PrepareResult], label: str) -> None:
        """Every backend's edits against its CDI policy and its host root (docs/cdi.md), before
        anything is written: a refused edit or a missing host path fails the claim (retriable:
        the kubelet retries, and a path may appear), naming backend, device and edit."""
        problems: list[str] = []
        for key, r in results.items():
            b = self._by_key[key]
            policy = getattr(b, "cdi_policy", None) or CdiPolicy()
            edits = [(f"device {name}", pd.edits) for name, pd in r.devices.items() if pd.edits is not None]
            if r.claim_edits is not None:
                edits.append(("claim-wide edits", r.claim_edits))
            notes: list[str] = []
            for what, e in edits:
                problems += [f"backend {key}, {what}: CDI {p}" for p in check_edits(e, policy, b.context.host_root, notes)]
            for n in notes:
                if (key, n) not in self._cdi_notes:  # once per backend and path, not per claim
                    self._cdi_notes.add((key, n))
                    self.log.warning("backend %s: CDI %s", key, n)
        if problems:
            raise ClaimError("cdi", f"claim {label}: the CDI spec would not be usable (retriable): "
                                    + "; ".join(problems))

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

    def _status_entries(self, plan: list[_Planned], results: dict[str, PrepareResult]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str | None]] = set()
        for p in plan:
            k = (p.allocated.pool, p.allocated.name, p.allocated.share_id)
            pd = results[p.backend].devices.get(p.allocated.name)
            st: DeviceStatus | None = pd.status if pd is not None else None
            if st is None or k in seen:
                continue
            seen.add(k)
            e: dict[str, Any] = {"driver": self.driver_name, "pool": k[0], "device": k[1]}
            if k[2]:
                e["shareID"] = k[2]
            if st.conditions:
                e["conditions"] = [{"reason": "Prepared", "message": "", "lastTransitionTime": _now_rfc3339(), **c}
                                   for c in st.conditions]
            if st.data is not None:
                e["data"] = _json_copy(dict(st.data), "device status data")
            if st.network_data is not None:
                nd = st.network_data
                e["networkData"] = {k2: v for k2, v in (("interfaceName", nd.interface_name), ("ips", list(nd.ips)),
                                                         ("hardwareAddress", nd.hardware_address)) if v}
            out.append(e)
        return out

    async def _reuse(self, entry: Mapping[str, Any], label: str) -> PrepareOutcome:
        try:
            ids = await self._ensure_cdi(entry)
        except (CdiError, ValueError, OSError, KeyError, TypeError) as exc:
            raise ClaimError("cdi", f"claim {label}: re-writing the CDI spec failed: {exc}") from None
        prepared = entry.get("prepared") or []
        if ids:
            prepared = [{**d, "cdiDeviceIds": [ids[(d["device"], d.get("shareId"))]]}
                        if (d["device"], d.get("shareId")) in ids else d for d in prepared]
        return _outcome(prepared)

    async def _ensure_cdi(self, entry: Mapping[str, Any]) -> dict[tuple[str, str | None], str]:
        cdi = entry.get("cdi") or {}
        devices = [(d["device"], d.get("shareId"), ContainerEdits.from_cdi(d.get("edits") or {}))
                   for d in cdi.get("devices", [])]
        if not devices:
            return {}
        ce = cdi.get("claimEdits")
        claim_edits = ContainerEdits.from_cdi(ce) if ce else None
        ids = await asyncio.to_thread(self.cdi.ensure_claim_spec, entry["uid"], devices, claim_edits)
        return {(d, s): i for (d, s, _), i in zip(devices, ids)}

    # --- unprepare / rollback -----------------------------------------------------------------

    async def _unprepare_one(self, ref: ClaimRef, turn: Turn, deadline: float | None) -> str:
        t0 = time.perf_counter()
        self.metrics.inflight(1, "unprepare")
        reason: str | None = None
        label = f"{ref.namespace}/{ref.name}"
        try:
            async with self._turn_locked(ref.uid, turn, deadline, label):
                entry = self.checkpoint.get(ref.uid)
                if entry is None:
                    self._log_done("unprepared", ref, t0, [], " (nothing prepared here)")
                    return ""
                self._commit(label, deadline)
                await self._teardown(entry)
            self.metrics.set_prepared_claims(self.prepared_claim_count())
            self._log_done("unprepared", ref, t0, _outcome(entry.get("prepared") or []).devices)
            return ""
        except (ClaimError, asyncio.CancelledError) as exc:
            # A cancellation is either dropped work (an answer for the kubelet) or a real one.
            err = exc if isinstance(exc, ClaimError) else self._dropped(exc, label)
            if err is None:
                raise
            reason = err.reason
            self._log_failed("unprepare", ref, t0, err)
            return str(err)
        except Exception as exc:
            reason = "internal"
            self.log.exception("unprepare of claim %s failed", ref.uid)
            return f"claim {ref.namespace}/{ref.name}: internal error: {exc}"
        finally:
            self.metrics.inflight(-1, "unprepare")
            self.metrics.observe_unprepare(time.perf_counter() - t0, reason)

    async def rollback_stale(self, uid: str) -> bool:
        """Roll back claim ``uid`` if it is still PrepareStarted or half-unprepared (janitor).
        Returns True when it was rolled back; raises ClaimError when the rollback failed (entry kept)."""
        async with self._hold_claim(uid):
            await self.checkpoint.refresh()
            entry = self.checkpoint.get(uid)
            if entry is None or not (entry.get("state") == PREPARE_STARTED or entry.get("unprepareStarted")):
                return False
            await self._teardown(entry)
            return True

    def _remove_spec(self, uid: str) -> None:
        """Remove the claim's CDI spec; a failure counts only while the file is still there (a
        read-only directory refuses to unlink even a file that was never written)."""
        try:
            self.cdi.remove_claim_spec(uid)
        except OSError:
            if not _spec_gone(self.cdi, uid):
                raise

    def _held_elsewhere(self, uid: str, part: Mapping[str, Any]) -> bool:
        """A partition recovered from CDI specs (owner unknown) that another claim of this boot
        also lists, e.g. a workload and an admin-access claim watching it: not destroyed under
        the other claim. Partitions a claim created itself are its own and always destroyed."""
        if not part.get("recovered"):
            return False
        return any(_same_partition(p, part) for u, e in self.checkpoint.claims.items()
                   if u != uid and self.physically_prepared(e) for p in e.get("partitions", []))

    async def _teardown(self, entry: Mapping[str, Any]) -> None:
        """Undo ``entry`` from the checkpoint alone, then delete it. Keeps going through all
        backends and partitions, gathering errors; on any error the entry stays (minus the
        partitions already destroyed) and ClaimError("unprepare") is raised."""
        uid = entry["uid"]
        label = f"{entry.get('namespace')}/{entry.get('name')}"
        info = ClaimInfo(uid, str(entry.get("namespace", "")), str(entry.get("name", "")))
        physical = self.physically_prepared(entry)
        completed = entry.get("state") == PREPARE_COMPLETED
        if completed and physical and not entry.get("unprepareStarted"):
            # Before the first side effect: a teardown that fails or dies half-way must never
            # leave an entry a later prepare would hand out again as prepared.
            def mark(claims: dict[str, dict[str, Any]]) -> None:
                if uid in claims:
                    claims[uid] = {**claims[uid], "unprepareStarted": time.time()}
            await self._cp(self.checkpoint.update(mark), label)
        errors: list[str] = []
        destroyed: list[Mapping[str, Any]] = []
        skip = self._nonparts.get(uid, set())
        parts = [p for p in entry.get("partitions", []) if isinstance(p, Mapping) and not _is_nonpart(p, skip)]
        prepared_by = list(entry.get("backends") or [])
        # A claim recovered from its CDI spec lists partitions but prepared nothing to undo.
        order = [*prepared_by, *(k for k in dict.fromkeys(p.get("backend") for p in parts) if k not in prepared_by)]
        for key in reversed(order):
            b = self._by_key.get(key)
            if b is None:
                self.log.warning("claim %s: backend %r recorded in the checkpoint is not configured; "
                                 "skipping its teardown", label, key)
                continue
            if key in prepared_by:
                devices = list(dict.fromkeys(d["device"] for d in entry.get("devices", []) if d.get("backend") == key))
                stored = StoredClaim(claim=info, completed=completed, devices=devices,
                                     journal=(entry.get("journal") or {}).get(key, {}),
                                     teardown=(entry.get("teardown") or {}).get(key, {}) if completed else {},
                                     physically_prepared=physical)
                try:
                    await b.hooks.unprepare(stored)
                except Exception as exc:
                    errors.append(f"backend {key}: dra_unprepare: {exc}")
                    continue
                killpoint(f"after dra_unprepare {key}")
            if not physical:
                continue
            for part in reversed([p for p in parts if p.get("backend") == key]):
                if self._held_elsewhere(uid, part):
                    destroyed.append(part)  # released; the last claim listing it destroys it
                    continue
                try:
                    await b.hooks.destroy_partition(partition_record(part))
                    destroyed.append(part)
                    killpoint(f"after dra_destroy_partition {key} {part.get('device')}")
                except Exception as exc:
                    errors.append(f"backend {key}: dra_destroy_partition for device {part.get('device')}: {exc}")
        if entry.get("statusWritten") and self.write_status is not None:
            try:
                await self.write_status(info, [])
            except Exception as exc:  # the claim is often gone already: never block unprepare
                self.log.info("claim %s: clearing status.devices failed (ignored): %s", label, exc)
        if errors:
            try:
                await asyncio.to_thread(self._remove_spec, uid)
            except (OSError, ValueError) as exc:
                errors.append(f"removing the CDI spec: {exc}")
            if destroyed:
                def prune(claims: dict[str, dict[str, Any]]) -> None:
                    e = claims.get(uid)
                    if e is not None:
                        claims[uid] = {**e, "partitions": [p for p in e.get("partitions", []) if p not in destroyed]}
                with contextlib.suppress(CheckpointError):
                    await self.checkpoint.update(prune)
            raise ClaimError("unprepare", f"claim {label}: " + "; ".join(errors))

        def drop(claims: dict[str, dict[str, Any]]) -> None:
            claims.pop(uid, None)
        # Removing the spec and dropping the entry run together (one fsync'd write less of
        # latency): a spec whose entry is gone is removed at start-up and by the janitor.
        removed, dropped = await asyncio.gather(asyncio.to_thread(self._remove_spec, uid),
                                                self.checkpoint.update(drop), return_exceptions=True)
        if isinstance(dropped, BaseException):
            raise ClaimError("checkpoint", f"claim {label}: {dropped}")
        killpoint("unprepared")
        if isinstance(removed, BaseException):
            raise ClaimError("cdi", f"claim {label}: removing the CDI spec failed (removed later by the "
                                    f"janitor): {removed}")


def _same_partition(a: Any, b: Mapping[str, Any]) -> bool:
    return isinstance(a, Mapping) and a.get("backend") == b.get("backend") and a.get("device") == b.get("device")


def _spec_gone(cdi: Any, uid: str) -> bool:
    try:
        return not os.path.lexists(cdi.claim_spec_path(uid))
    except (AttributeError, OSError, ValueError):
        return False


def _deadline(deadline: float | None) -> float | None:
    return CALL_DEADLINE.get() if deadline is None else deadline


def _until(deadline: float | None) -> "asyncio.Timeout":
    """``asyncio.timeout_at`` for a ``time.monotonic()`` deadline (None: no limit)."""
    if deadline is None:
        return asyncio.timeout_at(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + (deadline - time.monotonic()))


def _late(label: str) -> str:
    return (f"claim {label}: dropped: the caller's deadline passed while it waited (for earlier operations on "
            "the claim or for the API server); nothing was changed (the kubelet retries)")


def _is_pending(part: Any, backend: str, device: str) -> bool:
    return (isinstance(part, Mapping) and part.get("state") == PARTITION_PENDING
            and part.get("backend") == backend and part.get("device") == device)


def _is_nonpart(part: Mapping[str, Any], nonparts: set[tuple[str, str]]) -> bool:
    return part.get("state") == PARTITION_PENDING and (part.get("backend"), part.get("device")) in nonparts


def partition_record(part: Mapping[str, Any]) -> dict[str, Any]:
    """What ``dra_destroy_partition`` and ``dra_reconcile_partitions`` get for a checkpointed
    partition entry: the record ``dra_create_partition`` returned, or for a *pending* one (the
    hook had not returned: crash, error, or the device is no partition) ``{"device": name,
    "pending": True, "journal": {key: value recorded through ctx.record during that create}}``,
    plus ``"recovered": True`` when the checkpoint was lost and the claim recovered from its CDI
    spec (nothing recorded is left then). See docs/backends.md "Crash safety of partitions"."""
    if part.get("state") != PARTITION_PENDING and isinstance(part.get("record"), Mapping):
        return dict(part["record"])
    out = {"device": str(part.get("device", "")), "pending": True, "journal": dict(part.get("journal") or {})}
    if part.get("recovered"):
        out["recovered"] = True
    return out


def _strip(exc: Exception, label: str) -> str:
    msg = str(exc)
    prefix = f"claim {label}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _prepared(plan: list[_Planned], id_of: Mapping[tuple[str, str | None], str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for p in plan:
        a = p.allocated
        k = (a.pool, a.name, a.share_id)
        g = groups.get(k)
        if g is None:
            g = groups[k] = {"requests": [], "pool": a.pool, "device": a.name,
                             "cdiDeviceIds": [id_of[(a.name, a.share_id)]], "shareId": a.share_id}
        if a.request not in g["requests"]:
            g["requests"].append(a.request)
    return list(groups.values())


def _outcome(prepared: Sequence[Mapping[str, Any]]) -> PrepareOutcome:
    return PrepareOutcome(devices=[
        PreparedDevice(requests=list(d.get("requests") or []), pool=d["pool"], device=d["device"],
                       cdi_device_ids=list(d.get("cdiDeviceIds") or []), share_id=d.get("shareId"))
        for d in prepared])


__all__ = ["ClaimError", "ClaimGetter", "EngineMetrics", "KeyedLocks", "NullMetrics", "PARTITION_PENDING",
           "PrepareEngine", "StatusWriter", "partition_record"]

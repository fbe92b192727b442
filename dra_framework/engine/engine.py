"""PrepareEngine: NodePrepareResources / NodeUnprepareResources for one driver.

Implements :class:`dra_framework.kubelet.types.DRAEngine`. All state is keyed by claim UID and
kept in the driver's :class:`~dra_framework.engine.checkpoint.Checkpoint` (one
:class:`~dra_framework.engine.entry.ClaimEntry` per claim); teardown needs nothing but the checkpoint.

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
from typing import Any, Mapping

from ..backend import KeyedLocks
from ..kubelet.types import ClaimRef, PrepareOutcome
from .core import call_deadline
from .entry import PARTITION_PENDING, RECOVERED, PartitionEntry
from .interfaces import ClaimError, ClaimGetter, EngineMetrics, NullMetrics, StatusWriter
from .prepare import PrepareFlow
from .startup import StartupReconcile
from .teardown import TeardownFlow


class PrepareEngine(StartupReconcile, PrepareFlow, TeardownFlow):
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

    Its parts: :mod:`.core` (state, ordering, deadlines, shutdown), :mod:`.startup` (start-up
    reconciliation), :mod:`.planning` (claim → plan, pure), :mod:`.prepare` (the prepare flow),
    :mod:`.status` (device status entries), :mod:`.teardown` (unprepare and rollback), with the
    checkpoint entry in :mod:`.entry`.
    """

    async def prepare(self, claims: list[ClaimRef], deadline: float | None = None) -> dict[str, PrepareOutcome]:
        """NodePrepareResources: one outcome per distinct claim UID. ``deadline``: when the caller
        stops waiting, as a ``time.monotonic()`` value (default: :data:`CALL_DEADLINE`, set by the
        gRPC servicer). See :meth:`_spawn` for ordering and dropping."""
        if not self._started:
            await self.start()
        refs = list({c.uid: c for c in claims}.values())
        tasks = [self._spawn(self._prepare_one, ref, call_deadline(deadline)) for ref in refs]
        outs = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        return {ref.uid: out if isinstance(out, PrepareOutcome) else
                PrepareOutcome(error=f"claim {ref.namespace}/{ref.name}: internal error: {out!r}")
                for ref, out in zip(refs, outs, strict=True)}

    async def unprepare(self, claims: list[ClaimRef], deadline: float | None = None) -> dict[str, str]:
        """NodeUnprepareResources: claim UID → "" or an error (the kubelet retries). ``deadline``
        as for :meth:`prepare`."""
        if not self._started:
            await self.start()
        refs = list({c.uid: c for c in claims}.values())
        tasks = [self._spawn(self._unprepare_one, ref, call_deadline(deadline)) for ref in refs]
        outs = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        return {ref.uid: out if isinstance(out, str) else f"claim {ref.namespace}/{ref.name}: internal error: {out!r}"
                for ref, out in zip(refs, outs, strict=True)}


def partition_record(part: PartitionEntry | Mapping[str, Any]) -> dict[str, Any]:
    """What ``dra_destroy_partition`` and ``dra_reconcile_partitions`` get for a checkpointed
    partition entry (:meth:`PartitionEntry.hook_record`); also takes its JSON form."""
    entry = part if isinstance(part, PartitionEntry) else PartitionEntry.from_json(part)
    return entry.hook_record()


__all__ = ["RECOVERED", "ClaimError", "ClaimGetter", "EngineMetrics", "KeyedLocks", "NullMetrics",
           "PARTITION_PENDING", "PrepareEngine", "StatusWriter", "partition_record"]

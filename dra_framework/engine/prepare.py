"""The prepare flow of one claim, after its turn and lock are taken (see
:mod:`dra_framework.engine.engine` for the steps and the crash-safety argument)."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Mapping, Sequence

from ..backend import PrepareContext
from ..cdi.edits import ContainerEdits, merge
from ..cdi.errors import CdiError
from ..cdi.names import claim_device_name
from ..cdi.policy import CdiPolicy, check_edits
from ..killpoints import killpoint
from ..kubelet.types import ClaimRef, PrepareOutcome
from ..model import ClaimInfo, PrepareResult
from .checkpoint import CheckpointError
from .claim_lock import Turn
from .core import EngineCore, is_nonpart, late, outcome, strip_label, until
from .entry import PREPARE_COMPLETED, CdiDeviceRecord, ClaimEntry, PartitionEntry
from .interfaces import ClaimError
from .planning import PlannedDevice, apply_validation, plan_claim, prepared_records, started_entry
from .shares import conflict
from .status import json_copy, status_entries


class PrepareFlow(EngineCore):
    """The prepare half of the engine."""

    async def _prepare_one(self, ref: ClaimRef, turn: Turn, deadline: float | None) -> PrepareOutcome:
        t0 = time.perf_counter()
        self.metrics.inflight(1, "prepare")
        reason: str | None = None
        label = f"{ref.namespace}/{ref.name}"
        try:
            async with self._turn_locked(ref.uid, turn, deadline, label):
                entry = self.checkpoint.get(ref.uid)
                if entry is not None and entry.usable(self.checkpoint.boot_id):
                    # Prepared already (a claim shared by several pods, a kubelet restart): the
                    # allocation of a claim UID never changes while it is prepared, so no fetch.
                    self._commit(label, deadline)
                    out = await self._reuse(entry, label)
                    self._log_done("prepared", ref, t0, out.devices, " (prepared already)")
                    return out
                try:
                    async with until(deadline):
                        obj = await self._fetch(ref)
                except TimeoutError:
                    raise ClaimError("deadline", late(label)) from None
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
                   "half-unprepared" if entry.unprepare_started is not None else "interrupted")
            self.log.info("claim %s (%s): rolling back an %s prepare first", label, ref.uid, why)
            try:
                await self._teardown(entry)
            except ClaimError as exc:
                raise ClaimError("rollback", f"claim {label}: rolling back an earlier {why} prepare failed: "
                                             f"{strip_label(exc, label)}") from None
        inv = self.inventory
        plan = plan_claim(obj, driver=self.driver_name, node_name=self.node_name, inventory=inv,
                          index=self._index.of(inv), backends=list(self._by_key), config_types=self.config_types,
                          label=label)
        if not plan:
            return PrepareOutcome()
        plan = await apply_validation(plan, self._by_key, label)
        await self._write_started(info, plan, label)
        try:
            result = await self._run(info, plan, label)
        except BaseException as exc:
            err = exc if isinstance(exc, ClaimError) else ClaimError(
                "backend" if isinstance(exc, Exception) else "cancelled", f"claim {label}: {exc}")
            current = self.checkpoint.get(ref.uid)
            if current is not None:
                try:
                    await self._teardown(current)
                except Exception as rb:  # never lose the original error
                    detail = strip_label(rb, label) if isinstance(rb, ClaimError) else str(rb)
                    err = ClaimError(err.reason, f"{err}; {self._rollback_note(ref.uid)}: {detail}")
            if not isinstance(exc, Exception):
                raise
            raise err from None
        finally:
            self._nonparts.pop(ref.uid, None)
        self.metrics.set_prepared_claims(self.prepared_claim_count())
        return result

    def _rollback_note(self, uid: str) -> str:
        if self.checkpoint.get(uid) is not None:
            return "rollback failed (kept; retried by the next prepare or unprepare of the claim, or the janitor)"
        return "rollback incomplete (the leftover CDI spec is removed by the janitor)"

    async def _write_started(self, info: ClaimInfo, plan: Sequence[PlannedDevice], label: str) -> None:
        """Checkpoint ``PrepareStarted``, atomically with the check that no other claim holds
        one of the plan's devices in a way this claim cannot join: exclusively, the same share,
        or shares that leave too little capacity (engine/shares.py; ClaimError ``device_in_use``)."""
        boot = self.checkpoint.boot_id
        entry = started_entry(info, plan, backends=[b.key for b in self.backends], boot_id=boot, now=time.time(),
                              partitioning={b.key for b in self.backends if b.hooks.implements("dra_create_partition")})
        capacities = {(p.allocated.pool, p.allocated.name): p.allocated.device.capacity for p in plan}
        uid = info.uid

        def start(claims: dict[str, ClaimEntry]) -> None:
            why = conflict(claims, uid, entry.devices, capacities, boot)
            if why is not None:
                raise ClaimError("device_in_use", f"claim {label}: {why}")
            claims[uid] = entry

        try:
            await self.checkpoint.update(start)
        except CheckpointError as exc:
            raise ClaimError("checkpoint", f"claim {label}: {exc}") from None
        killpoint("prepare-started")

    async def _record(self, uid: str, backend: str, key: str, value: Any, creating: str | None = None) -> None:
        """Journal ``key`` = ``value`` for ``backend``; while ``dra_create_partition`` of device
        ``creating`` runs, also into that device's pending partition entry (same write)."""
        stored = json_copy(value, f"journal entry {key!r}")

        def fn(claims: dict[str, ClaimEntry]) -> None:
            e = claims.get(uid)
            if e is None:
                raise CheckpointError(f"claim {uid} vanished from the checkpoint during prepare")
            journal = {**e.journal, backend: {**e.journal.get(backend, {}), key: stored}}
            parts = e.partitions
            if creating is not None:
                parts = tuple(dataclasses.replace(p, journal={**p.journal, key: stored})
                              if p.is_pending_for(backend, creating) else p for p in parts)
            claims[uid] = e.replace(journal=journal, partitions=parts)
        killpoint(f"before-record {backend} {key}")
        await self.checkpoint.update(fn)
        killpoint(f"record {backend} {key}")

    async def _run(self, info: ClaimInfo, plan: Sequence[PlannedDevice], label: str) -> PrepareOutcome:
        uid = info.uid
        results: dict[str, PrepareResult] = {}
        # (backend, device) whose dra_create_partition returned None: a rollback in this process
        # skips their pending entries (see TeardownFlow._teardown).
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
                    rec = json_copy(dict(rec), f"partition record of device {d.name!r}")

                    def add(claims: dict[str, ClaimEntry], _b: str = b.key, _d: str = d.name,
                            _r: dict[str, Any] = rec) -> None:
                        e = claims[uid]
                        done = PartitionEntry(backend=_b, device=_d, record=_r)
                        parts = [done if p.is_pending_for(_b, _d) else p for p in e.partitions
                                 if not is_nonpart(p, nonparts)]
                        if done not in parts:
                            parts.append(done)
                        claims[uid] = e.replace(partitions=tuple(parts))
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
        self._check_edits(results, label)
        claim_edits_list = [(f"backend {k}", r.claim_edits) for k, r in results.items() if r.claim_edits is not None]
        try:
            claim_edits = merge(claim_edits_list) if claim_edits_list else None
            id_of = {(d, s): self.cdi.qualified(claim_device_name(uid, d, s)) for d, s, _ in cdi_devices}
        except (CdiError, ValueError) as exc:
            raise ClaimError("cdi", f"claim {label}: building the CDI spec failed: {exc}") from None
        statuses = status_entries(self.driver_name, plan, results)
        prepared = prepared_records(plan, id_of)
        teardown = {k: json_copy(dict(r.teardown or {}), f"backend {k}: teardown") for k, r in results.items()}
        cdi_stored = tuple(CdiDeviceRecord(d, s, e.to_cdi()) for d, s, e in cdi_devices)
        claim_edits_stored = claim_edits.to_cdi() if claim_edits is not None else None

        # The CDI spec is written while the remaining checkpoint updates commit: both orders are
        # crash-safe (a completed claim without its spec gets it back at start-up and on the
        # kubelet's retry; a spec without a completed entry is removed by the rollback), and it
        # saves one fsync'd write of latency. A rollback only starts once the write has ended.
        cdi_write = asyncio.ensure_future(self.cdi_io.run(self.cdi.write_claim_spec, uid, cdi_devices, claim_edits))
        try:
            if statuses and self.write_status is not None:
                def mark(claims: dict[str, ClaimEntry]) -> None:
                    claims[uid] = claims[uid].replace(status_written=True)
                await self._cp(self.checkpoint.update(mark), label)
                try:
                    await self.write_status(info, statuses)
                except Exception as exc:
                    raise ClaimError("status", f"claim {label}: writing ResourceClaim.status.devices failed: {exc}") from None

            def complete(claims: dict[str, ClaimEntry]) -> None:
                e = claims[uid]
                claims[uid] = e.replace(state=PREPARE_COMPLETED, completed_at=time.time(), teardown=teardown,
                                        cdi_devices=cdi_stored, cdi_claim_edits=claim_edits_stored, prepared=prepared,
                                        # what is still pending now are devices that are no partitions
                                        partitions=tuple(p for p in e.partitions if not p.pending))
            killpoint("before prepare-completed")  # the CDI spec may or may not be written yet
            await self._cp(self.checkpoint.update(complete), label)
        finally:
            await asyncio.wait([cdi_write])
        killpoint("prepare-completed")
        write_error = cdi_write.exception()
        if write_error is not None:
            raise ClaimError("cdi", f"claim {label}: writing the CDI spec failed: {write_error}") from None
        return outcome(prepared)

    def _check_edits(self, results: Mapping[str, PrepareResult], label: str) -> None:
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

    async def _reuse(self, entry: ClaimEntry, label: str) -> PrepareOutcome:
        try:
            ids = await self._ensure_cdi(entry)
        except (CdiError, ValueError, OSError, KeyError, TypeError) as exc:
            raise ClaimError("cdi", f"claim {label}: re-writing the CDI spec failed: {exc}") from None
        prepared = entry.prepared or ()
        if ids:
            prepared = tuple(dataclasses.replace(d, cdi_device_ids=(ids[(d.device, d.share_id)],))
                             if (d.device, d.share_id) in ids else d for d in prepared)
        return outcome(prepared)


__all__ = ["PrepareFlow"]

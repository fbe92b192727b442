"""Start-up reconciliation of the engine: load the checkpoint and bring the node in line with it.

Run once by :meth:`PrepareEngine.start` (and on the first kubelet call): temp files of
interrupted writes are removed; a lost (corrupt or missing) checkpoint keeps the claim CDI specs
as ``Recovered`` claims; entries from an earlier boot are cleaned (hardware teardown skipped);
completed claims get their CDI spec rewritten if missing; CDI claim specs without an entry are
removed; each backend's ``dra_reconcile_partitions`` gets the partition records checkpointed
claims own. See docs/failure-modes.md.
"""
from __future__ import annotations

import asyncio

from ..cdi.names import parse_claim_device_name
from ..fsutil import remove_stale_temp_files
from ..model import OpaqueConfig
from .checkpoint import CheckpointError
from .configs import ConfigTypes
from .core import EngineCore
from .entry import RECOVERED, ClaimEntry, PartitionEntry


class StartupReconcile(EngineCore):
    """The start-up half of the engine (see the module docstring)."""

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
                              entry.namespace, entry.name, uid)
            except Exception as exc:
                self.log.warning("cleaning up claim %s from an earlier boot failed (kept for retry): %s", uid, exc)
        for uid, entry in list(self.checkpoint.claims.items()):
            if entry.completed and entry.unprepare_started is None:
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
            owned = [p.hook_record() for e in self.checkpoint.claims.values() if self.physically_prepared(e)
                     for p in e.partitions if p.backend == b.key]
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
        boot = self.checkpoint.boot_id

        def adopt(claims: dict[str, ClaimEntry]) -> None:
            for uid in orphans:
                claims.setdefault(uid, ClaimEntry(uid=uid, state=RECOVERED, boot_id=boot,
                                                  partitions=tuple(parts[uid])))
        try:
            await self.checkpoint.update(adopt)
        except CheckpointError as exc:
            self.log.error("cannot record claims recovered from CDI specs: %s", exc)
            return
        self.log.warning("checkpoint lost: kept the CDI specs of %d claim(s) the kubelet may still use (%s); "
                         "their backend teardown data is lost", len(orphans), ", ".join(orphans))

    async def _recovered_partitions(self, uid: str) -> list[PartitionEntry]:
        """Pending partition entries for the devices named in claim ``uid``'s CDI spec."""
        try:
            ids = await asyncio.to_thread(self.cdi.read_claim_spec_ids, uid) or []
            inv = self.inventory
        except Exception as exc:
            self.log.warning("claim %s: cannot tell its devices from its CDI spec: %s", uid, exc)
            return []
        owners = {name: key for (_, name), key in inv.owner.items()}
        out: list[PartitionEntry] = []
        for qid in ids:
            try:
                _, device, _ = parse_claim_device_name(qid.rpartition("=")[2])
            except ValueError:
                continue
            key = owners.get(device)
            b = self._by_key.get(key) if key else None
            if key is None or b is None or not b.hooks.implements("dra_create_partition"):
                continue
            part = PartitionEntry.pending_for(key, device, recovered=True)
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


__all__ = ["StartupReconcile"]

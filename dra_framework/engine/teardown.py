"""The unprepare flow and the rollback of a claim, from its checkpoint entry alone.

Unprepare: unknown UID → success; otherwise mark the entry ``unprepareStarted`` (so a teardown
that fails or dies half-way is never reused as prepared: the next prepare rolls it back and
redoes the claim), ``dra_unprepare`` then ``dra_destroy_partition`` per partition (skipped when
the node rebooted since), remove the CDI spec and the entry. Errors keep the entry (minus
partitions already destroyed) so the kubelet retries.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

from ..killpoints import killpoint
from ..kubelet.types import ClaimRef
from ..model import ClaimInfo, StoredClaim
from .checkpoint import CheckpointError
from .claim_lock import Turn
from .core import EngineCore, is_nonpart, outcome
from .entry import ClaimEntry, PartitionEntry
from .interfaces import ClaimError


class TeardownFlow(EngineCore):
    """The unprepare half of the engine (see the module docstring)."""

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
            self._log_done("unprepared", ref, t0, outcome(entry.prepared or ()).devices)
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
            if entry is None or not entry.unfinished():
                return False
            await self._teardown(entry)
            return True

    def _held_elsewhere(self, uid: str, part: PartitionEntry) -> bool:
        """A partition recovered from CDI specs (owner unknown) that another claim of this boot
        also lists, e.g. a workload and an admin-access claim watching it: not destroyed under
        the other claim. Partitions a claim created itself are its own and always destroyed."""
        if not part.recovered:
            return False
        return any(p.same_partition(part) for u, e in self.checkpoint.claims.items()
                   if u != uid and self.physically_prepared(e) for p in e.partitions)

    async def _teardown(self, entry: ClaimEntry) -> None:
        """Undo ``entry`` from the checkpoint alone, then delete it. Keeps going through all
        backends and partitions, gathering errors; on any error the entry stays (minus the
        partitions already destroyed) and ClaimError("unprepare") is raised."""
        uid = entry.uid
        label = f"{entry.namespace}/{entry.name}"
        info = ClaimInfo(uid, entry.namespace, entry.name)
        physical = self.physically_prepared(entry)
        completed = entry.completed
        if completed and physical and entry.unprepare_started is None:
            # Before the first side effect: a teardown that fails or dies half-way must never
            # leave an entry a later prepare would hand out again as prepared.
            def mark(claims: dict[str, ClaimEntry]) -> None:
                if uid in claims:
                    claims[uid] = claims[uid].replace(unprepare_started=time.time())
            await self._cp(self.checkpoint.update(mark), label)
        errors: list[str] = []
        destroyed: list[PartitionEntry] = []
        skip = self._nonparts.get(uid, set())
        parts = [p for p in entry.partitions if not is_nonpart(p, skip)]
        prepared_by = list(entry.backends)
        # A claim recovered from its CDI spec lists partitions but prepared nothing to undo.
        order = [*prepared_by, *(k for k in dict.fromkeys(p.backend for p in parts) if k not in prepared_by)]
        for key in reversed(order):
            b = self._by_key.get(key)
            if b is None:
                self.log.warning("claim %s: backend %r recorded in the checkpoint is not configured; "
                                 "skipping its teardown", label, key)
                continue
            if key in prepared_by:
                stored = StoredClaim(claim=info, completed=completed, devices=entry.backend_devices(key),
                                     journal=entry.journal.get(key, {}),
                                     teardown=(entry.teardown or {}).get(key, {}) if completed else {},
                                     physically_prepared=physical)
                try:
                    await b.hooks.unprepare(stored)
                except Exception as exc:
                    errors.append(f"backend {key}: dra_unprepare: {exc}")
                    continue
                killpoint(f"after dra_unprepare {key}")
            if not physical:
                continue
            for part in reversed([p for p in parts if p.backend == key]):
                if self._held_elsewhere(uid, part):
                    destroyed.append(part)  # released; the last claim listing it destroys it
                    continue
                try:
                    await b.hooks.destroy_partition(part.hook_record())
                    destroyed.append(part)
                    killpoint(f"after dra_destroy_partition {key} {part.device}")
                except Exception as exc:
                    errors.append(f"backend {key}: dra_destroy_partition for device {part.device}: {exc}")
        if entry.status_written and self.write_status is not None:
            try:
                await self.write_status(info, [])
            except Exception as exc:  # the claim is often gone already: never block unprepare
                self.log.info("claim %s: clearing status.devices failed (ignored): %s", label, exc)
        if errors:
            try:
                await self.cdi_io.run(self._remove_spec, uid)
            except (OSError, ValueError) as exc:
                errors.append(f"removing the CDI spec: {exc}")
            if destroyed:
                def prune(claims: dict[str, ClaimEntry]) -> None:
                    e = claims.get(uid)
                    if e is not None:
                        claims[uid] = e.replace(partitions=tuple(p for p in e.partitions if p not in destroyed))
                with contextlib.suppress(CheckpointError):
                    await self.checkpoint.update(prune)
            raise ClaimError("unprepare", f"claim {label}: " + "; ".join(errors))

        def drop(claims: dict[str, ClaimEntry]) -> None:
            claims.pop(uid, None)
        # Removing the spec and dropping the entry run together (one fsync'd write less of
        # latency): a spec whose entry is gone is removed at start-up and by the janitor.
        removed: BaseException | None
        dropped: BaseException | None
        removed, dropped = await asyncio.gather(self.cdi_io.run(self._remove_spec, uid),
                                                self.checkpoint.update(drop), return_exceptions=True)
        if isinstance(dropped, BaseException):
            raise ClaimError("checkpoint", f"claim {label}: {dropped}")
        killpoint("unprepared")
        if isinstance(removed, BaseException):
            raise ClaimError("cdi", f"claim {label}: removing the CDI spec failed (removed later by the "
                                    f"janitor): {removed}")


__all__ = ["TeardownFlow"]

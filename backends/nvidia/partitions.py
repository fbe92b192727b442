"""Dynamic MIG: create and destroy GPU/compute instances, roll back, reconcile at start-up.

The partition record (also the journal value under ``mig/<device name>``) holds everything
rollback needs, written before each side effect::

    {"device", "parent" (GPU uuid), "bus", "parentMinor", "profile", "profileId", "start", "size",
     "step": "creating" | "failed" | "gi-created" | "ready", "giId"?, "ciId"?, "uuid"? (MIG uuid),
     "adopted"?: true}

"creating" means the GI may or may not exist: the placement was checked free right before, and
the scheduler's counters keep other claims off it while this claim is allocated, so a GI found
at exactly (profileId, start) is ours. A destroy is idempotent: instances already gone are fine.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping, Sequence

from . import nvml_api as api
from .naming import parse_mig_name
from .nvml_api import GpuInstance, Nvml, NvmlError

log = logging.getLogger(__name__)

Record = Callable[[str, Any], Awaitable[None]]


def journal_key(device: str) -> str:
    return f"mig/{device}"


def mig_record(pending: Mapping[str, Any]) -> dict[str, Any] | None:
    """The MIG record :meth:`MigManager.create` journaled for a pending partition, or None when
    the creation recorded nothing (it never reached a side effect, or the device is a full GPU)."""
    rec = (pending.get("journal") or {}).get(journal_key(str(pending.get("device", ""))))
    return dict(rec) if isinstance(rec, Mapping) else None


def owned_mig_records(owned: Sequence[Mapping[str, Any]], bus_to_uuid: Mapping[str, str]) -> list[dict[str, Any]]:
    """The framework's ``owned`` partition records as MIG records: finished ones as they are; a
    pending one by what its creation journaled (any step but "failed": the instance may exist);
    a recovered one (checkpoint lost, claim kept from its CDI spec) by the placement its device
    name encodes. ``bus_to_uuid``: normalized PCI bus id → GPU uuid."""
    out: list[dict[str, Any]] = []
    for r in owned:
        if not r.get("pending"):
            out.append(dict(r))
            continue
        rec = mig_record(r)
        if rec is not None:
            if rec.get("step") != "failed":
                out.append(rec)
            continue
        parsed = parse_mig_name(str(r.get("device", ""))) if r.get("recovered") else None
        if parsed and parsed[0] in bus_to_uuid:
            out.append({"parent": bus_to_uuid[parsed[0]], "profileId": parsed[2], "start": parsed[3]})
    return out


class MigManager:
    """Creates and destroys MIG instances. Half-created instances of an interrupted prepare need
    no journal of their own here: the framework keeps a pending partition entry in its checkpoint
    holding what :meth:`create` recorded (docs/backends.md "Partitions"), and hands it to
    :meth:`destroy` and :meth:`reconcile`."""

    def __init__(self, nvml: Nvml, logger: logging.Logger | None = None) -> None:
        self.nvml = nvml
        self.log = logger or log
        self._locks: dict[str, asyncio.Lock] = {}
        #: GPU uuid → unowned instances adopted at start-up (published as they are).
        self.adopted: dict[str, list[GpuInstance]] = {}
        #: GPU uuids left tainted by the ``refuse`` policy (or a failed ``destroy``).
        self.refused: set[str] = set()

    def lock(self, gpu: str) -> asyncio.Lock:
        return self._locks.setdefault(gpu, asyncio.Lock())

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def _mig_enabled(self, uuid: str) -> bool:
        sysinfo = await self._call(self.nvml.system)
        g = next((g for g in sysinfo.gpus if g.uuid == uuid), None)
        if g is None:
            raise RuntimeError(f"GPU {uuid} not found by NVML")
        return g.mig_enabled

    async def _find_gi(self, uuid: str, profile_id: int, start: int) -> GpuInstance | None:
        try:
            gis = await self._call(self.nvml.gpu_instances, uuid)
        except NvmlError as exc:
            if exc.code in (api.ERROR_NOT_SUPPORTED, api.ERROR_NOT_FOUND):
                return None  # MIG disabled: no instances
            raise
        return next((g for g in gis if g.profile_id == profile_id and g.start == start), None)

    async def lookup(self, data: Mapping[str, Any], device: str) -> dict[str, Any]:
        """The live GI/CI of dynamic MIG ``device`` (``{giId, ciId, uuid}``), for admin access,
        which uses a partition but never creates one. RuntimeError when none exists."""
        uuid, pid, start = data["parent"], int(data["profileId"]), int(data["start"])
        gi = await self._find_gi(uuid, pid, start)
        cis = await self._call(self.nvml.compute_instances, uuid, gi.id) if gi is not None else []
        if gi is None or not cis:
            raise RuntimeError(f"admin access to MIG device {device!r}: no MIG instance exists at placement {start} "
                               f"of profile {data['profile']} on GPU {uuid}; admin access never creates one "
                               "(it exists while another claim has the device prepared)")
        mig = next((m for m in await self._call(self.nvml.mig_devices, uuid)
                    if m.gi_id == gi.id and m.ci_id == cis[0].id), None)
        return {"giId": gi.id, "ciId": cis[0].id, "uuid": mig.uuid if mig else None}

    async def create(self, record: Record, data: Mapping[str, Any], device: str,
                     previous: Mapping[str, Any] | None) -> dict[str, Any]:
        """Create the GI (with placement) and its full CI for ``device``; ``previous`` is this
        claim's journal entry from an earlier, interrupted attempt."""
        uuid, pid, start = data["parent"], int(data["profileId"]), int(data["start"])
        key = journal_key(device)
        rec: dict[str, Any] = {"device": device, "parent": uuid, "bus": data["bus"], "parentMinor": data["parentMinor"],
                               "profile": data["profile"], "profileId": pid, "start": start, "size": data["size"],
                               "step": "creating"}
        async with self.lock(uuid):
            existing = await self._find_gi(uuid, pid, start)
            if existing is not None:
                if not previous or previous.get("step") == "failed":
                    raise RuntimeError(f"error creating GPU instance for {device!r}: placement {start} of profile "
                                       f"{data['profile']} already holds GPU instance {existing.id} that this claim does not own")
                gi = existing  # our own from the interrupted attempt
            else:
                if not await self._mig_enabled(uuid):
                    rec["enabledMig"] = True
                    await record(key, rec)
                    try:
                        await self._call(self.nvml.set_mig_mode, uuid, True)
                    except NvmlError as exc:
                        raise RuntimeError(f"error enabling MIG mode on GPU {uuid} for {device!r}: {exc}") from None
                    if not await self._mig_enabled(uuid):
                        raise RuntimeError(f"MIG mode on GPU {uuid} is pending a GPU reset (Ampere cannot toggle "
                                           f"MIG live); enable MIG mode and reset the GPU first")
                await record(key, rec)
                try:
                    gi = await self._call(self.nvml.create_gpu_instance, uuid, pid, start)
                except NvmlError as exc:
                    rec["step"] = "failed"
                    await record(key, rec)
                    raise RuntimeError(f"error creating GPU instance for {device!r}: {exc}") from None
            rec.update(step="gi-created", giId=gi.id)
            await record(key, rec)
            cis = await self._call(self.nvml.compute_instances, uuid, gi.id)
            ci = cis[0] if cis else None
            if ci is None:
                try:
                    ci = await self._call(self.nvml.create_compute_instance, uuid, gi.id)
                except NvmlError as exc:
                    raise RuntimeError(f"error creating compute instance for {device!r}: {exc}") from None
            mig = next((m for m in await self._call(self.nvml.mig_devices, uuid) if m.gi_id == gi.id and m.ci_id == ci.id), None)
            rec.update(step="ready", ciId=ci.id, uuid=mig.uuid if mig else None)
            await record(key, rec)
            return rec

    async def destroy(self, rec: Mapping[str, Any]) -> None:
        """Destroy what ``rec`` says was (maybe) created. ``rec`` is a finished partition record
        or the framework's pending one (``{"device", "pending": True, "journal"}``), whose
        ``mig/<device>`` journal entry says how far the creation got. Raises RuntimeError when an
        instance is in use (the kubelet retries the unprepare)."""
        if rec.get("pending"):
            rec = mig_record(rec) or {}
        if rec.get("adopted") or rec.get("step") in (None, "failed"):
            return
        uuid, device = rec["parent"], rec.get("device", "?")
        async with self.lock(uuid):
            await self._destroy_locked(rec, uuid, device)

    async def _destroy_locked(self, rec: Mapping[str, Any], uuid: str, device: str) -> None:
        try:
            gis = await self._call(self.nvml.gpu_instances, uuid)
        except NvmlError as exc:
            if exc.code in (api.ERROR_NOT_SUPPORTED, api.ERROR_NOT_FOUND):
                return  # MIG disabled or GPU unknown: nothing left
            if exc.code == api.ERROR_GPU_IS_LOST:
                self.log.warning("GPU %s is lost: cannot destroy MIG instance of %s", uuid, device)
                return
            raise RuntimeError(f"destroying MIG device {device!r}: {exc}") from None
        gi = next((g for g in gis if g.profile_id == rec["profileId"] and g.start == rec["start"]), None)
        if gi is None:
            if rec.get("enabledMig"):  # killed after enabling MIG mode, before the GI existed
                await self._maybe_disable_mig(uuid)
            return
        if rec.get("giId") is not None and gi.id != rec["giId"]:
            self.log.warning("MIG device %s: GI at placement has id %d, record says %s; not destroying", device, gi.id, rec["giId"])
            return
        if rec.get("uuid"):
            mig = [m for m in await self._call(self.nvml.mig_devices, uuid) if m.gi_id == gi.id]
            if mig and all(m.uuid != rec["uuid"] for m in mig):
                self.log.warning("MIG device %s was re-created by someone else (uuid %s); not destroying", device, mig[0].uuid)
                return
        await self._destroy_gi(uuid, gi.id, device)
        await self._maybe_disable_mig(uuid)

    async def _destroy_gi(self, uuid: str, gi_id: int, what: str) -> None:
        try:
            for ci in await self._call(self.nvml.compute_instances, uuid, gi_id):
                await self._call(self.nvml.destroy_compute_instance, uuid, gi_id, ci.id)
            await self._call(self.nvml.destroy_gpu_instance, uuid, gi_id)
        except NvmlError as exc:
            if exc.code == api.ERROR_NOT_FOUND:
                return
            raise RuntimeError(f"error destroying MIG device {what!r} (GPU {uuid}, GI {gi_id}): {exc}") from None

    async def _maybe_disable_mig(self, uuid: str) -> None:
        """Hopper+: turn MIG mode off when the last instance is gone, so the full GPU works again."""
        try:
            if await self._call(self.nvml.gpu_instances, uuid):
                return
            sysinfo = await self._call(self.nvml.system)
            g = next((g for g in sysinfo.gpus if g.uuid == uuid), None)
            if g is not None and g.mig_enabled and g.architecture != "Ampere":
                await self._call(self.nvml.set_mig_mode, uuid, False)
        except NvmlError as exc:
            self.log.warning("GPU %s: could not disable MIG mode after the last instance was destroyed: %s", uuid, exc)

    async def reconcile(self, gpus: Sequence[str], owned: Sequence[Mapping[str, Any]], policy: str) -> bool:
        """Apply ``policy`` to instances no record in ``owned`` claims (MIG records: ``parent``,
        ``profileId``, ``start``, optional ``giId``; see :func:`owned_mig_records`). Never raises
        for a policy outcome. Returns True when anything changed (adopted, destroyed or refused)."""
        self.adopted.clear()
        self.refused.clear()
        by_id = {(r.get("parent"), r.get("giId")) for r in owned if r.get("giId") is not None}
        by_place = {(r.get("parent"), r.get("profileId"), r.get("start")) for r in owned}
        changed = False
        for uuid in gpus:
            try:
                gis = await self._call(self.nvml.gpu_instances, uuid)
            except NvmlError:
                continue  # MIG disabled / not capable
            for gi in gis:
                if (uuid, gi.id) in by_id or (uuid, gi.profile_id, gi.start) in by_place:
                    continue
                changed = True
                what = f"GPU {uuid} GI {gi.id} (profile id {gi.profile_id}, placement {gi.start}:{gi.size})"
                if policy == "adopt":
                    self.log.info("adopting unowned MIG instance %s", what)
                    self.adopted.setdefault(uuid, []).append(gi)
                elif policy == "destroy":
                    self.log.warning("found unexpected MIG instance %s that no claim owns: tearing it down", what)
                    try:
                        await self._destroy_gi(uuid, gi.id, what)
                    except RuntimeError as exc:
                        self.log.error("%s; tainting the GPU's devices instead", exc)
                        self.refused.add(uuid)
                else:
                    self.log.warning("unowned MIG instance %s: policy refuse, tainting the GPU's devices %s",
                                     what, "gpu.nvidia.com/unmanaged-mig")
                    self.refused.add(uuid)
        return changed

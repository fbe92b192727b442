"""A fake NVML built from the real MIG tables: the same interface as the pynvml adapter.

It models what the backend depends on and what the reference driver's bugs came from:
MIG mode (live toggle on Hopper, reset needed on Ampere), GPU/compute instance creation with
placement and NVML's error codes for overlaps and exhausted profiles, real GI ids, MIG UUIDs that
change on re-creation, ``IN_USE`` on destroy while a process is attached, events (XID with GI/CI
ids, ECC, GPU lost) and GPUs without event support, plus fault injection for any method.

State (MIG mode, instances, lost GPUs) is kept in memory and, with ``state_path``, persisted as
JSON after every change, so a restarted driver sees the same "hardware". Events can be injected
through the API or by dropping ``*.json`` files into ``inject_dir`` (for out-of-process tests):
``{"kind": "xid", "uuid": "GPU-...", "xid": 79, "gi": 7, "ci": 0}``, ``{"kind": "ecc-double",
"uuid": ...}``, ``{"kind": "gpu-lost", "uuid": ...}``, ``{"kind": "gpu-recovered", "uuid": ...}``.
"""
from __future__ import annotations

import collections
import copy
import json
import os
import threading
import uuid as uuidlib
from pathlib import Path
from typing import Any

from .. import nvml_api as api
from ..mig_tables import CI_PROFILES, MODELS, BoardModel, gi_id_for_placement
from ..nvml_api import (ComputeInstance, Event, GiProfile, GpuInfo, GpuInstance, MigDevice, NvmlError,
                        SystemInfo)


class _EventSet:
    def __init__(self) -> None:
        self.masks: dict[str, int] = {}


class FakeNvml:
    """``spec``: a host description (see ``examples/hosts/dgx-h100/nvml.json``)."""

    def __init__(self, spec: dict[str, Any], state_path: str | Path | None = None,
                 inject_dir: str | Path | None = None, host_root: str | Path | None = None) -> None:
        self.spec = spec
        #: With a host tree: a GPU whose sysfs ``driver`` link names another driver (vfio-pci) is
        #: invisible, as real NVML only enumerates GPUs bound to nvidia.
        self.host_root = Path(host_root) if host_root else None
        self.state_path = Path(state_path) if state_path else None
        self.inject_dir = Path(inject_dir) if inject_dir else None
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._events: collections.deque[Event] = collections.deque()
        self._faults: dict[str, list[int]] = {}
        self._initialized = 0
        self.calls: list[tuple[str, tuple]] = []
        self.gpus: dict[str, dict[str, Any]] = {}
        for g in spec["gpus"]:
            model = MODELS[g["model"]]
            self.gpus[g["uuid"]] = {
                "spec": g, "model": model,
                "mig": bool(g.get("migEnabled", False)), "migPending": bool(g.get("migEnabled", False)),
                "gis": {}, "lost": False, "busy": set(),
            }
        for g in spec["gpus"]:
            for inst in g.get("migInstances", []):
                gi = self._create_gi(g["uuid"], inst["profileId"], inst["start"], persist=False)
                self._create_ci(g["uuid"], gi.id, persist=False)
        if self.state_path and self.state_path.exists():
            self._load()

    def _bound_to_nvidia(self, bus_id: str) -> bool:
        if self.host_root is None:
            return True
        link = self.host_root / "sys/bus/pci/devices" / api.normalize_bus_id(bus_id) / "driver"
        return not link.is_symlink() or Path(os.readlink(link)).name == "nvidia"

    # ------------------------------------------------------------------ test controls
    def fail_next(self, method: str, code: int, count: int = 1) -> None:
        """Make the next ``count`` calls of ``method`` raise NvmlError(code)."""
        with self._lock:
            self._faults.setdefault(method, []).extend([code] * count)

    def inject_xid(self, uuid: str, xid: int, gi_id: int = api.NO_INSTANCE, ci_id: int = api.NO_INSTANCE) -> None:
        self._push(Event("xid", uuid, xid, gi_id, ci_id))

    def inject_ecc(self, uuid: str, double: bool = True) -> None:
        self._push(Event("ecc-double" if double else "ecc-single", uuid))

    def lose_gpu(self, uuid: str) -> None:
        with self._lock:
            self.gpus[uuid]["lost"] = True
            self._save()
        self._push(Event("gpu-lost", uuid))

    def recover_gpu(self, uuid: str) -> None:
        with self._lock:
            self.gpus[uuid]["lost"] = False
            self._save()
            self._cond.notify_all()

    def reset_gpu(self, uuid: str) -> None:
        """A GPU reset: pending MIG mode becomes current (Ampere)."""
        with self._lock:
            g = self.gpus[uuid]
            g["mig"] = g["migPending"]
            self._save()

    def attach_process(self, uuid: str, gi_id: int) -> None:
        """A process now uses the GI: destroying it fails with IN_USE until detached."""
        with self._lock:
            self.gpus[uuid]["busy"].add(gi_id)

    def detach_process(self, uuid: str, gi_id: int) -> None:
        with self._lock:
            self.gpus[uuid]["busy"].discard(gi_id)

    # ------------------------------------------------------------------ helpers
    def _push(self, ev: Event) -> None:
        with self._cond:
            self._events.append(ev)
            self._cond.notify_all()

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        faults = self._faults.get(method)
        if faults:
            raise NvmlError(faults.pop(0), method)

    def _gpu(self, uuid: str, method: str) -> dict[str, Any]:
        g = self.gpus.get(uuid)
        if g is None:
            raise NvmlError(api.ERROR_NOT_FOUND, f"{method}({uuid})")
        if g["lost"]:
            raise NvmlError(api.ERROR_GPU_IS_LOST, f"{method}({uuid})")
        return g

    @staticmethod
    def _profile_by_id(model: BoardModel, profile_id: int) -> GiProfile | None:
        return next((p for p in model.profiles if p.id == profile_id), None)

    def _save(self) -> None:
        if not self.state_path:
            return
        data = {u: {"mig": g["mig"], "migPending": g["migPending"], "lost": g["lost"],
                    "gis": {str(k): v for k, v in g["gis"].items()}} for u, g in self.gpus.items()}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.state_path)

    def _load(self) -> None:
        data = json.loads(self.state_path.read_text())  # type: ignore[union-attr]
        for u, s in data.items():
            if u in self.gpus:
                g = self.gpus[u]
                g["mig"], g["migPending"], g["lost"] = s["mig"], s["migPending"], s["lost"]
                g["gis"] = {int(k): {**v, "cis": {int(c): ci for c, ci in v["cis"].items()}}
                            for k, v in s["gis"].items()}

    def _poll_inject_dir(self) -> None:
        if not self.inject_dir or not self.inject_dir.is_dir():
            return
        for f in sorted(self.inject_dir.glob("*.json")):
            try:
                d = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            f.unlink(missing_ok=True)
            kind, u = d.get("kind"), d.get("uuid", "")
            if kind == "xid":
                self.inject_xid(u, int(d["xid"]), int(d.get("gi", api.NO_INSTANCE)), int(d.get("ci", api.NO_INSTANCE)))
            elif kind in ("ecc-double", "ecc-single"):
                self.inject_ecc(u, kind == "ecc-double")
            elif kind == "gpu-lost":
                self.lose_gpu(u)
            elif kind == "gpu-recovered":
                self.recover_gpu(u)

    # ------------------------------------------------------------------ Nvml interface
    def init(self) -> None:
        with self._lock:
            self._enter("init")
            self._initialized += 1

    def shutdown(self) -> None:
        with self._lock:
            self._initialized = max(0, self._initialized - 1)

    def system(self) -> SystemInfo:
        with self._lock:
            self._enter("system")
            info = SystemInfo(self.spec.get("driverVersion", "550.54.15"), int(self.spec.get("cudaDriverVersion", 12040)))
            for u, g in self.gpus.items():
                if g["lost"]:
                    continue  # real NVML: handle lookup fails with GPU_IS_LOST
                if not self._bound_to_nvidia(g["spec"]["pciBusId"]):
                    continue
                m: BoardModel = g["model"]
                s = g["spec"]
                info.gpus.append(GpuInfo(
                    uuid=u, minor=int(s["minor"]), name=m.name, brand=s.get("brand", "Nvidia"),
                    architecture=m.architecture, cuda_compute_capability=m.cuda_compute_capability,
                    memory_bytes=m.memory_bytes, pci_bus_id=api.normalize_bus_id(s["pciBusId"]),
                    mig_capable=bool(m.profiles), mig_enabled=g["mig"], mig_pending=g["migPending"]))
            return info

    def gi_profiles(self, uuid: str) -> list[GiProfile]:
        with self._lock:
            self._enter("gi_profiles", uuid)
            return list(self._gpu(uuid, "gi_profiles")["model"].profiles)

    def set_mig_mode(self, uuid: str, enabled: bool) -> None:
        with self._lock:
            self._enter("set_mig_mode", uuid, enabled)
            g = self._gpu(uuid, "set_mig_mode")
            if not enabled and g["gis"]:
                raise NvmlError(api.ERROR_IN_USE, "set_mig_mode")
            g["migPending"] = enabled
            if g["model"].mig_live_toggle:
                g["mig"] = enabled
            self._save()

    def gpu_instances(self, uuid: str) -> list[GpuInstance]:
        with self._lock:
            self._enter("gpu_instances", uuid)
            g = self._gpu(uuid, "gpu_instances")
            if not g["mig"]:
                raise NvmlError(api.ERROR_NOT_SUPPORTED, "gpu_instances")
            return [GpuInstance(i, v["profileId"], v["start"], v["size"]) for i, v in sorted(g["gis"].items())]

    def compute_instances(self, uuid: str, gi_id: int) -> list[ComputeInstance]:
        with self._lock:
            self._enter("compute_instances", uuid, gi_id)
            gi = self._gi(uuid, gi_id, "compute_instances")
            return [ComputeInstance(c, v["profileId"]) for c, v in sorted(gi["cis"].items())]

    def _gi(self, uuid: str, gi_id: int, method: str) -> dict[str, Any]:
        g = self._gpu(uuid, method)
        gi = g["gis"].get(gi_id)
        if gi is None:
            raise NvmlError(api.ERROR_NOT_FOUND, f"{method}(gi {gi_id})")
        return gi

    def create_gpu_instance(self, uuid: str, profile_id: int, start: int) -> GpuInstance:
        with self._lock:
            self._enter("create_gpu_instance", uuid, profile_id, start)
            return self._create_gi(uuid, profile_id, start)

    def _create_gi(self, uuid: str, profile_id: int, start: int, persist: bool = True) -> GpuInstance:
        g = self._gpu(uuid, "create_gpu_instance")
        if not g["mig"]:
            raise NvmlError(api.ERROR_NOT_SUPPORTED, "create_gpu_instance: MIG mode is disabled")
        prof = self._profile_by_id(g["model"], profile_id)
        if prof is None:
            raise NvmlError(api.ERROR_INVALID_ARGUMENT, f"create_gpu_instance: profile id {profile_id}")
        size = next((sz for st, sz in prof.placements if st == start), None)
        if size is None:
            raise NvmlError(api.ERROR_INVALID_ARGUMENT, f"create_gpu_instance: placement start {start}")
        want = set(range(start, start + size))
        used_compute = 0
        same = 0
        for gi in g["gis"].values():
            if want & set(range(gi["start"], gi["start"] + gi["size"])):
                raise NvmlError(api.ERROR_INSUFFICIENT_RESOURCES, "create_gpu_instance: placement overlaps an existing GPU instance")
            used_compute += gi["sliceCount"]
            same += gi["profileId"] == profile_id
        if same >= prof.instance_count or used_compute + prof.slice_count > 7:
            raise NvmlError(api.ERROR_INSUFFICIENT_RESOURCES, "create_gpu_instance")
        gi_id = gi_id_for_placement(start, size)
        g["gis"][gi_id] = {"profileId": profile_id, "start": start, "size": size,
                           "sliceCount": prof.slice_count, "cis": {}}
        if persist:
            self._save()
        return GpuInstance(gi_id, profile_id, start, size)

    def create_compute_instance(self, uuid: str, gi_id: int) -> ComputeInstance:
        with self._lock:
            self._enter("create_compute_instance", uuid, gi_id)
            return self._create_ci(uuid, gi_id)

    def _create_ci(self, uuid: str, gi_id: int, persist: bool = True) -> ComputeInstance:
        gi = self._gi(uuid, gi_id, "create_compute_instance")
        if gi["cis"]:
            raise NvmlError(api.ERROR_INSUFFICIENT_RESOURCES, "create_compute_instance")
        ci_profile = next(e for e, sc in CI_PROFILES.items() if sc == gi["sliceCount"])
        gi["cis"][0] = {"profileId": ci_profile, "uuid": f"MIG-{uuidlib.uuid4()}"}
        if persist:
            self._save()
        return ComputeInstance(0, ci_profile)

    def destroy_compute_instance(self, uuid: str, gi_id: int, ci_id: int) -> None:
        with self._lock:
            self._enter("destroy_compute_instance", uuid, gi_id, ci_id)
            g = self._gpu(uuid, "destroy_compute_instance")
            gi = self._gi(uuid, gi_id, "destroy_compute_instance")
            if ci_id not in gi["cis"]:
                raise NvmlError(api.ERROR_NOT_FOUND, f"destroy_compute_instance(gi {gi_id}, ci {ci_id})")
            if gi_id in g["busy"]:
                raise NvmlError(api.ERROR_IN_USE, "destroy_compute_instance")
            del gi["cis"][ci_id]
            self._save()

    def destroy_gpu_instance(self, uuid: str, gi_id: int) -> None:
        with self._lock:
            self._enter("destroy_gpu_instance", uuid, gi_id)
            g = self._gpu(uuid, "destroy_gpu_instance")
            gi = self._gi(uuid, gi_id, "destroy_gpu_instance")
            if gi_id in g["busy"] or gi["cis"]:
                raise NvmlError(api.ERROR_IN_USE, "destroy_gpu_instance")
            del g["gis"][gi_id]
            self._save()

    def mig_devices(self, uuid: str) -> list[MigDevice]:
        with self._lock:
            self._enter("mig_devices", uuid)
            g = self._gpu(uuid, "mig_devices")
            out = []
            for gi_id, gi in sorted(g["gis"].items()):
                prof = self._profile_by_id(g["model"], gi["profileId"])
                for ci_id, ci in sorted(gi["cis"].items()):
                    out.append(MigDevice(ci["uuid"], gi_id, ci_id, prof.memory_mib << 20 if prof else None))
            return out

    def gpu_responsive(self, uuid: str) -> bool:
        with self._lock:
            g = self.gpus.get(uuid)
            return g is not None and not g["lost"]

    def event_set(self) -> object:
        with self._lock:
            self._enter("event_set")
            return _EventSet()

    def register_events(self, event_set: object, uuid: str, mask: int) -> int:
        with self._lock:
            self._enter("register_events", uuid, mask)
            g = self._gpu(uuid, "register_events")
            if not g["spec"].get("supportsEvents", True):
                raise NvmlError(api.ERROR_NOT_SUPPORTED, "register_events")
            assert isinstance(event_set, _EventSet)
            event_set.masks[uuid] = mask
            return mask

    _KIND_BITS = {"xid": api.EVENT_XID_CRITICAL, "ecc-double": api.EVENT_DOUBLE_BIT_ECC,
                  "ecc-single": api.EVENT_SINGLE_BIT_ECC}

    def wait_event(self, event_set: object, timeout_ms: int) -> Event | None:
        assert isinstance(event_set, _EventSet)
        with self._cond:
            self._poll_inject_dir()
            if not self._events:
                self._cond.wait(timeout_ms / 1000)
                self._poll_inject_dir()
            while self._events:
                ev = self._events.popleft()
                if ev.kind == "gpu-lost":
                    return ev
                if ev.uuid in event_set.masks and event_set.masks[ev.uuid] & self._KIND_BITS[ev.kind]:
                    return ev
            return None

    def free_event_set(self, event_set: object) -> None:
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """A copy of the MIG state, for assertions."""
        with self._lock:
            return {u: copy.deepcopy({"mig": g["mig"], "gis": g["gis"]}) for u, g in self.gpus.items()}

"""Helpers for the NVIDIA backend tests: backends built through the public entry points
(Registry + composition.build_backends) and a claim driven through the hooks like the framework
does, with a hand-made PrepareContext."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dra_framework.backend import DeviceLocks, PrepareContext
from dra_framework.composition import build_backends, discover
from dra_framework.config import Settings
from dra_framework.model import AllocatedDevice, ClaimInfo, StoredClaim
from dra_framework.plugins import Registry

from dra_backends.nvidia.fake import PRESETS, write_host_tree

REPO = Path(__file__).resolve().parents[2]
SAMPLE_HOST = REPO / "examples/hosts/dgx-h100"


def preset_host(tmp_path: Path, preset: str, **gpu_overrides: Any) -> Path:
    spec = json.loads(json.dumps(PRESETS[preset]))
    for i, over in gpu_overrides.get("gpus", {}).items():
        spec["gpus"][i].update(over)
    return write_host_tree(tmp_path / f"host-{preset}", spec)


@dataclass
class Driver:
    """One composed driver with the nvidia backend, plus helpers that act like the framework."""

    instance: Any
    rediscoveries: list[int] = field(default_factory=list)

    @property
    def hooks(self):
        return self.instance.hooks

    @property
    def backend(self):
        return self.instance.hooks.instance

    async def discover(self):
        inv = await discover([self.instance])
        return inv.pools[None]

    def device(self, pool, name):
        return next(d for d in pool.devices if d.name == name)


def make_driver(registry: Registry, tmp_path: Path, host_root: Path, state: str = "state", **options: Any) -> Driver:
    opts = {"nvml": "fake", "hostRoot": str(host_root), "driverRoot": str(host_root), "hostDriverRoot": "/",
            **options}
    settings = Settings.model_validate({
        "nodeName": "node-1", "stateDir": str(tmp_path / state), "cdiRoot": str(tmp_path / "cdi"),
        "drivers": [{"name": "gpu.nvidia.com", "backends": [{"name": "nvidia", "options": opts}]}]})
    inst = build_backends(settings, 0, settings.drivers[0], registry)[0]
    drv = Driver(inst)
    inst.context.on_rediscovery = lambda: drv.rediscoveries.append(1)
    return drv


class Claim:
    """Drives one claim through the hooks the way the framework does, keeping the journal as the
    checkpoint would (JSON round-tripped)."""

    def __init__(self, drv: Driver, uid: str, devices: list[AllocatedDevice]) -> None:
        self.drv, self.uid, self.devices = drv, uid, devices
        self.info = ClaimInfo(uid, "default", f"claim-{uid}")
        self.journal: dict[str, Any] = {}
        self.partitions: dict[str, Any] = {}
        #: device → journal entries recorded while its dra_create_partition ran and had not returned
        #: (the framework's pending partition entries)
        self.pending: dict[str, dict[str, Any]] = {}
        self.creating: str | None = None
        self.teardown: dict[str, Any] = {}
        self.completed = False

    def context(self) -> PrepareContext:
        async def record(key: str, value: Any) -> None:
            self.journal[key] = json.loads(json.dumps(value))
            if self.creating is not None:
                self.pending.setdefault(self.creating, {})[key] = self.journal[key]
        return PrepareContext(self.info, "nvidia", dict(self.journal), self.partitions, record, DeviceLocks())

    def partition_records(self) -> list[dict[str, Any]]:
        """What the framework hands to dra_destroy_partition / dra_reconcile_partitions."""
        return [*({"device": d, "pending": True, "journal": j} for d, j in self.pending.items()),
                *self.partitions.values()]

    async def prepare(self):
        hooks = self.drv.hooks
        for d in self.devices:
            for c in d.configs:
                # Mirrors the engine: a config that does not apply to this device type is refused
                # here (the tests scope configs to the device's request).
                if await hooks.call("dra_validate_config", config=c, device=d) is False:
                    raise ValueError(f"{type(c).__name__} cannot be applied to device {d.name!r}")
        ctx = self.context()
        for d in self.devices:
            self.creating = d.name
            self.pending.setdefault(d.name, {})
            try:
                rec = await hooks.call("dra_create_partition", ctx=ctx, device=d)
            finally:
                self.creating = None
            del self.pending[d.name]
            if rec is not None:
                self.partitions[d.name] = json.loads(json.dumps(rec))
        result = await hooks.call("dra_prepare", ctx=ctx, devices=self.devices)
        self.teardown = json.loads(json.dumps(result.teardown))
        self.completed = True
        return result

    def stored(self, physically_prepared: bool = True) -> StoredClaim:
        return StoredClaim(self.info, self.completed, [d.name for d in self.devices], dict(self.journal),
                           dict(self.teardown) if self.completed else {}, physically_prepared)

    async def unprepare(self, drv: Driver | None = None) -> None:
        hooks = (drv or self.drv).hooks
        await hooks.call("dra_unprepare", stored=self.stored())
        for rec in reversed(self.partition_records()):
            await hooks.call("dra_destroy_partition", record=rec)


def allocated(device, request: str = "gpu", configs=()) -> AllocatedDevice:
    return AllocatedDevice(request=request, pool="node-1", device=device, configs=tuple(configs))

"""Admin-access results through the real engine with the nvidia backend: they use a GPU or a
dynamic MIG device as it is and never create, destroy or reconfigure anything."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
engine_support = pytest.importorskip("engine_support")

from dra_backends.nvidia.backend import NvidiaBackend  # noqa: E402
from dra_backends.nvidia.fake import PRESETS  # noqa: E402
from dra_backends.nvidia.options import NvidiaOptions  # noqa: E402

from nvidia_helpers import SAMPLE_HOST  # noqa: E402

GPU0 = PRESETS["dgx-h100"]["gpus"][0]["uuid"]
FULL0 = "gpu-0000-1b-00-0"
MIG0 = "gpu-0000-1b-00-0-mig-1g10gb-19-0"
TIMESLICE = {"apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig",
             "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}}


async def make_env(tmp_path):
    host = tmp_path / "host"
    shutil.copytree(SAMPLE_HOST, host, symlinks=True)
    opts = NvidiaOptions.model_validate({"nvml": "fake", "hostRoot": str(host), "driverRoot": str(host),
                                         "hostDriverRoot": "/", "migStrategy": "dynamic", "executor": "record"})
    env = engine_support.Env(tmp_path, [("nvidia", lambda ctx: NvidiaBackend(opts, ctx))],
                             policies={"nvidia": opts.default_cdi_policy()})
    await env.make_engine()
    return env


def nodes(env, uid, device):
    spec = json.loads(next(p for p in env.cdi_root.glob("*.json") if uid in p.name).read_text())
    dev = next(d for d in spec["devices"] if d["name"] == f"{uid}-{device}")
    return [n["path"] for n in dev["containerEdits"].get("deviceNodes", [])]


async def test_admin_access_uses_a_workload_mig_device_and_gpu_as_they_are(tmp_path):
    env = await make_env(tmp_path)
    engine, backend = env.engine, env.instances["nvidia"]
    work = env.add_claim("work", [{"request": "mig", "device": MIG0}])
    assert (await engine.prepare([work]))[work.uid].error == ""
    gis = backend.nvml.snapshot()[GPU0]["gis"]
    assert len(gis) == 1
    commands = list(backend.executor.commands)

    mon = env.add_claim("mon", [{"request": "mig", "device": MIG0, "adminAccess": True},
                                {"request": "gpu", "device": FULL0, "adminAccess": True}],
                        namespace="monitoring", configs=[engine_support.opaque(TIMESLICE, requests=["gpu"])])
    out = (await engine.prepare([mon]))[mon.uid]
    assert out.error == ""
    assert nodes(env, mon.uid, MIG0) == nodes(env, work.uid, MIG0)     # the same GPU/compute instance
    assert "/dev/nvidia0" in nodes(env, mon.uid, FULL0)
    assert engine.checkpoint.get(mon.uid)["partitions"] == []
    assert backend.nvml.snapshot()[GPU0]["gis"] == gis                # nothing created or destroyed
    assert backend.nvml.snapshot()[GPU0]["mig"] is True                # MIG mode left on
    assert backend.executor.commands == commands                       # no time-slice change

    assert await engine.unprepare([mon]) == {mon.uid: ""}
    assert backend.nvml.snapshot()[GPU0]["gis"] == gis                 # the workload's instance stays
    assert await engine.unprepare([work]) == {work.uid: ""}
    assert backend.nvml.snapshot()[GPU0]["gis"] == {}


async def test_admin_access_to_a_mig_device_nobody_created_fails_clearly(tmp_path):
    env = await make_env(tmp_path)
    mon = env.add_claim("mon", [{"request": "mig", "device": MIG0, "adminAccess": True}], namespace="monitoring")
    err = (await env.engine.prepare([mon]))[mon.uid].error
    assert "admin access to MIG device" in err and "no MIG instance exists" in err
    assert env.instances["nvidia"].nvml.snapshot()[GPU0]["gis"] == {}
    assert env.engine.checkpoint.get(mon.uid) is None and env.cdi_files() == []

"""The backend through the real prepare engine (checkpoint, CDI writer, config decoding):
a full GPU with time-slicing and a dynamic MIG 1g.10gb, then unprepare. Uses the engine tests'
helpers (tests/engine/engine_support.py); skipped if they are not available."""
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


async def test_full_gpu_and_dynamic_mig_through_the_engine(tmp_path):
    host = tmp_path / "host"
    shutil.copytree(SAMPLE_HOST, host, symlinks=True)
    opts = NvidiaOptions.model_validate({"nvml": "fake", "hostRoot": str(host), "driverRoot": str(host),
                                         "hostDriverRoot": "/", "migStrategy": "dynamic"})
    env = engine_support.Env(tmp_path, [("nvidia", lambda ctx: NvidiaBackend(opts, ctx))],
                             policies={"nvidia": opts.default_cdi_policy()})
    engine = await env.make_engine()
    backend = env.instances["nvidia"]
    ts = {"apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig",
          "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}}
    ref = env.add_claim("c1", [{"request": "gpu", "device": "gpu-0000-43-00-0"},
                               {"request": "mig", "device": "gpu-0000-1b-00-0-mig-1g10gb-19-0"}],
                        configs=[engine_support.opaque(ts, requests=["gpu"])])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    spec = json.loads(next(env.cdi_root.glob("*.json")).read_text())
    nodes = {d["name"]: [n["path"] for n in d["containerEdits"].get("deviceNodes", [])] for d in spec["devices"]}
    assert "/dev/nvidia1" in nodes[f"{ref.uid}-gpu-0000-43-00-0"]
    assert "/dev/nvidia-caps/nvidia-cap66" in nodes[f"{ref.uid}-gpu-0000-1b-00-0-mig-1g10gb-19-0"]
    # self-contained nodes: a runtime injects them without stat-ing the host path
    every = [n for d in spec["devices"] for n in d["containerEdits"].get("deviceNodes", [])]
    every += spec.get("containerEdits", {}).get("deviceNodes", [])
    assert every and all(n["type"] == "c" and "major" in n and "minor" in n for n in every), every
    cap = next(n for n in every if n["path"] == "/dev/nvidia-caps/nvidia-cap66")
    assert (cap["major"], cap["minor"]) == (511, 66)
    assert len(backend.nvml.gpu_instances(GPU0)) == 1
    assert backend.executor.commands[-1][-1] == "3"
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert backend.nvml.snapshot()[GPU0]["gis"] == {}
    assert backend.executor.commands[-1][-1] == "0"


async def test_wrong_config_kind_fails_claim_without_side_effects(tmp_path):
    host = tmp_path / "host"
    shutil.copytree(SAMPLE_HOST, host, symlinks=True)
    opts = NvidiaOptions.model_validate({"nvml": "fake", "hostRoot": str(host), "driverRoot": str(host),
                                         "migStrategy": "dynamic"})
    env = engine_support.Env(tmp_path, [("nvidia", lambda ctx: NvidiaBackend(opts, ctx))],
                             policies={"nvidia": opts.default_cdi_policy()})
    engine = await env.make_engine()
    cfg = {"apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig"}
    ref = env.add_claim("c1", [{"request": "mig", "device": "gpu-0000-1b-00-0-mig-1g10gb-19-0"}],
                        configs=[engine_support.opaque(cfg, requests=["mig"])])
    out = await engine.prepare([ref])
    assert "GpuConfig" in out[ref.uid].error and "cannot be applied" in out[ref.uid].error
    assert env.instances["nvidia"].nvml.snapshot()[GPU0]["gis"] == {}


async def test_claim_wide_gpu_config_skips_mig_devices(tmp_path):
    """A claim-wide GpuConfig applies to the claim's full GPU and is skipped for its MIG device
    (as the NVIDIA driver does), instead of failing the claim."""
    host = tmp_path / "host"
    shutil.copytree(SAMPLE_HOST, host, symlinks=True)
    opts = NvidiaOptions.model_validate({"nvml": "fake", "hostRoot": str(host), "driverRoot": str(host),
                                         "hostDriverRoot": "/", "migStrategy": "dynamic", "executor": "record"})
    env = engine_support.Env(tmp_path, [("nvidia", lambda ctx: NvidiaBackend(opts, ctx))],
                             policies={"nvidia": opts.default_cdi_policy()})
    engine = await env.make_engine()
    cfg = {"apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig",
           "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}}
    ref = env.add_claim("c2", [{"request": "gpu", "device": "gpu-0000-43-00-0"},
                               {"request": "mig", "device": "gpu-0000-1b-00-0-mig-1g10gb-19-0"}],
                        configs=[engine_support.opaque(cfg)])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    assert len(out[ref.uid].devices) == 2

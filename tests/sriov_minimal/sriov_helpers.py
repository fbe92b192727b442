"""Helpers for the sriov-minimal example tests: the real engine (tests/engine's Env: real
checkpoint, CDI writer and plugin hooks, claims from an in-memory API) on a copy of the
sriov-e810 sample host, with FakePciKernel playing the kernel for rebinding writes."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/engine"))

from engine_support import Env  # noqa: E402

from dra_sriov_minimal import Options, SriovBackend  # noqa: E402


def build_sample_host(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("sriov_e810_host", REPO / "examples/hosts/sriov_e810.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(root)


def sriov_env(tmp_path: Path) -> Env:
    env = Env(tmp_path, [("sriov", lambda ctx: SriovBackend(Options(hotplug=False), ctx))])
    build_sample_host(env.host_root)
    return env

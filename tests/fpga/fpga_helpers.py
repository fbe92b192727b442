"""Helpers for the fpga backend tests: the sample hosts (examples/hosts/fpga_hosts.py) and the real
engine (tests/engine's Env: real checkpoint, CDI writer and hooks, claims from an in-memory API)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/engine"))

from engine_support import Env, opaque  # noqa: E402

from dra_backends.fpga.backend import FpgaBackend  # noqa: E402
from dra_backends.fpga.options import FpgaOptions  # noqa: E402

API = "fpga.dra-framework.io/v1alpha1"


def hosts_module():
    spec = importlib.util.spec_from_file_location("fpga_hosts", REPO / "examples/hosts/fpga_hosts.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(name: str, root: Path) -> Path:
    return hosts_module().HOSTS[name](root)


IMAGE_DIRS = {"fpga-d5005": ["/srv/intel.com/fpga"], "fpga-n3000": ["/srv/intel.com/fpga"],
              "fpga-u250": ["/opt/xilinx/firmware/xclbins"]}


def fpga_env(tmp_path: Path, host: str = "fpga-d5005", **options: Any) -> Env:
    env = Env(tmp_path, [])
    build(host, env.host_root)
    opts = {"hostRoot": str(env.host_root), "imageDirs": IMAGE_DIRS[host], "hotplug": False,
            "executor": "fake", **options}
    env.factories = [("fpga", lambda ctx: FpgaBackend(FpgaOptions(**opts), ctx))]
    return env


def fpga_config(**params: Any) -> dict[str, Any]:
    return opaque({"apiVersion": API, "kind": "FpgaConfig", **params}, driver="gpu.example.com")


def port_file(host: Path, bdf: str, name: str = "afu_id") -> Path:
    return next((host / "sys/bus/pci/devices" / bdf).glob(f"fpga_region/region*/dfl-port.*/{name}"))


def afu(host: Path, bdf: str) -> str:
    return port_file(host, bdf).read_text().strip()

"""Helpers for the PCI kit tests."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_sample_host_module():
    """examples/hosts/sriov_e810.py (not a package: the sample-host generator script)."""
    spec = importlib.util.spec_from_file_location("sriov_e810_host", REPO / "examples/hosts/sriov_e810.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

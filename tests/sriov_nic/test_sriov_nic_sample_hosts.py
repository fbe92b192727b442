"""The SR-IOV sample hosts are exactly what their generator scripts write, and
``dra-framework discover`` lists the selected VFs with their attributes on each."""
from __future__ import annotations

import subprocess
import sys

import pytest
from sriov_nic_helpers import REPO, build_host
from dra_framework.testing import tree_snapshot

CLI = [sys.executable, "-m", "dra_framework.cli"]


@pytest.mark.parametrize("kind, folder", [("cx6dx", "sriov-cx6dx"), ("dgx", "dgx-h100-cx7")])
def test_committed_sample_host_matches_its_generator(tmp_path, kind, folder):
    gen = build_host(kind, tmp_path / "gen")
    committed = tree_snapshot(REPO / "examples/hosts" / folder)
    committed.pop("README.md", None)
    assert committed == tree_snapshot(gen), (
        f"examples/hosts/{folder} is out of date (dgx-h100-cx7 copies examples/hosts/dgx-h100): rerun "
        f"python examples/hosts/{ {'cx6dx': 'sriov_cx6dx.py', 'dgx': 'dgx_h100_cx7.py'}[kind] } examples/hosts/{folder} "
        "on a removed folder and keep its README.md")


@pytest.mark.parametrize("config, devices, must_have", [
    ("sriov-e810.yaml", [f"vf-0000-17-01-{i}" for i in range(4)],
     ["pfName=enp23s0f0", "currentDriver=vfio-pci", "linkSpeed=100000", "dra.net/numaNode=0"]),
    ("sriov-cx6dx.yaml", [f"vf-0000-c1-00-{i}" for i in range(2, 6)],
     ["rdma=True", "pfName=enp193s0f0np0", "resource.kubernetes.io/pcieRoot=pci0000:c0"]),
    ("dgx-h100-cx7.yaml", [f"vf-0000-{b}-00-{f}" for b in ("18", "40", "4f", "5e", "9a", "c0", "ce") for f in (1, 2)],
     ["linkType=infiniband", "gpu-0000-1b-00-0", "resource.kubernetes.io/pcieRoot=pci0000:15"]),
])
def test_discover_lists_the_selected_vfs(config, devices, must_have):
    r = subprocess.run([*CLI, "discover", "-c", str(REPO / "examples/configs" / config)], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = [line.split()[2] for line in r.stdout.splitlines() if line.startswith("sriovnic.dra-framework.io")]
    assert listed == devices
    for text in must_have:
        assert text in r.stdout

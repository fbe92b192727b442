"""sriov_nic discovery: VFs through virtfn links only, the selection vocabulary of the SR-IOV
device plugin, the attributes, skipped functions logged once, unexpected bindings tainted."""
from __future__ import annotations

import logging
import os
import shutil

import pytest
from pydantic import ValidationError
from sriov_nic_helpers import DRIVER, backend, build_host, discover

from dra_framework.testing.hosttree import HostTree

from dra_backends.sriov_nic.options import SriovNicOptions

E810_VFS = [f"vf-0000-17-01-{i}" for i in range(4)]


def test_e810_vf_attributes(tmp_path):
    root = build_host("e810", tmp_path / "h")
    devs = discover(backend(root))
    assert sorted(devs) == E810_VFS  # the PFs are never offered
    assert devs["vf-0000-17-01-1"].attributes == {
        "resource.kubernetes.io/pciBusID": "0000:17:01.1", "resource.kubernetes.io/pcieRoot": "pci0000:16",
        "vendor": "8086", "deviceID": "1889", "pfDeviceID": "1592", "pciAddress": "0000:17:01.1",
        "pfPciAddress": "0000:17:00.0", "pfName": "enp23s0f0", "vfID": 1, "linkType": "ethernet",
        "linkSpeed": 100000, "eswitchMode": "legacy", "rdma": False, "currentDriver": "iavf",
        "dra.net/numaNode": 0, "resource.kubernetes.io/numaNode": 0}
    assert devs["vf-0000-17-01-3"].attributes["currentDriver"] == "vfio-pci"
    assert all(not d.taints for d in devs.values())


def test_cx6dx_rdma_attributes(tmp_path):
    root = build_host("cx6dx", tmp_path / "h")
    devs = discover(backend(root))
    a = devs["vf-0000-c1-00-2"].attributes
    assert (a["rdma"], a["pfName"], a["deviceID"], a["pfDeviceID"], a["vfID"]) == (True, "enp193s0f0np0", "101e", "101d", 0)
    assert a["resource.kubernetes.io/pcieRoot"] == "pci0000:c0"


def test_discovery_does_not_need_the_vf_netdev(tmp_path):
    """A VF whose netdev is inside a pod (gone from the host's sysfs) is still the same device."""
    root = build_host("e810", tmp_path / "h")
    before = discover(backend(root))["vf-0000-17-01-0"].attributes
    t = HostTree(root)
    shutil.rmtree(t.device_dir("0000:17:01.0") / "net")
    os.unlink(root / "sys/class/net/enp23s0f0v0")
    assert discover(backend(root))["vf-0000-17-01-0"].attributes == before


def test_vfs_only_through_virtfn_links(tmp_path):
    """A function at the address a VF would have, but not linked from the PF, is not a VF."""
    root = build_host("e810", tmp_path / "h")
    t = HostTree(root)
    t.pci_function("0000:17:01.4", parent="pci0000:16/0000:16:01.0", vendor="8086", device="1889",
                   class_code="020000", driver="iavf")
    assert sorted(discover(backend(root))) == E810_VFS


@pytest.mark.parametrize("selectors, expected", [
    ([{"pfNames": ["enp23s0f0#1-2"]}], E810_VFS[1:3]),
    ([{"pfNames": ["enp23s0f0#0,3"]}], [E810_VFS[0], E810_VFS[3]]),
    ([{"drivers": ["vfio-pci"]}], [E810_VFS[3]]),
    ([{"pciAddresses": ["17:01.2"]}], [E810_VFS[2]]),
    ([{"vendors": ["15b3"]}], []),
    ([{"devices": ["1889"], "linkTypes": ["ethernet"], "rdma": False}], E810_VFS),
    ([{"rdma": True}], []),
    ([{"pfPciAddresses": ["0000:17:00.1"]}], []),
    ([{"pfNames": ["enp23s0f0#0"]}, {"pfNames": ["enp23s0f0#3"]}], [E810_VFS[0], E810_VFS[3]]),
])
def test_selectors(tmp_path, selectors, expected):
    root = build_host("e810", tmp_path / "h")
    assert sorted(discover(backend(root, selectors))) == expected


def test_nothing_selected_is_a_warning(tmp_path, caplog):
    root = build_host("e810", tmp_path / "h")
    with caplog.at_level(logging.INFO):
        assert discover(backend(root, [])) == {}
    assert "no VF selected" in caplog.text and "4 VFs found" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_skipped_functions_logged_once_with_reason(tmp_path, caplog):
    root = build_host("e810", tmp_path / "h")
    b = backend(root, [{"pfNames": ["enp23s0f0#0"]}])
    with caplog.at_level(logging.INFO):
        discover(b)
        discover(b)
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert sorted(lines) == sorted([
        "PCI function 0000:17:00.0 skipped: SR-IOV PF with 4 VFs (its VFs are offered, not the PF)",
        "PCI function 0000:17:00.1 skipped: network function without SR-IOV VFs (only VFs are offered)",
        *[f"PCI function 0000:17:01.{i} skipped: VF not matched by options.selectors" for i in (1, 2, 3)]])


@pytest.mark.parametrize("entry, error", [
    ({"pfNames": ["ens1f0#3-1"]}, "range 3-1 is reversed"),
    ({"pfNames": ["ens1f0#0-65535"]}, "VF index 65535 is above 65534"),
    ({"pfNames": ["ens1f0#x"]}, "expected <pf netdev>"),
    ({"vendors": ["80860"]}, "not a 4-digit hex PCI id"),
    ({"pciAddresses": ["nope"]}, "not a PCI address"),
    ({"linkType": ["ethernet"]}, "linkType"),
])
def test_bad_selector_names_the_field(entry, error):
    with pytest.raises(ValidationError) as e:
        SriovNicOptions.model_validate({"selectors": [entry]})
    assert error in str(e.value)


@pytest.mark.parametrize("driver, value", [(None, "no-driver"), ("pci-stub", "bound-to-pci-stub")])
def test_unexpected_binding_is_tainted(tmp_path, driver, value):
    root = build_host("e810", tmp_path / "h")
    HostTree(root).bind("0000:17:01.2", driver)
    devs = discover(backend(root))
    assert [(t.key, t.value, t.effect.value) for t in devs["vf-0000-17-01-2"].taints] == \
        [(f"{DRIVER}/unexpected-binding", value, "NoSchedule")]
    assert not devs["vf-0000-17-01-3"].taints  # vfio-pci is expected


def test_pf_link_down_taints_its_vfs_until_it_is_up(tmp_path):
    root = build_host("e810", tmp_path / "h")
    b = backend(root)
    discover(b)
    assert {r.health.value for r in b.link_reports()} == {"Healthy"}
    state = root / "sys/class/net/enp23s0f0/operstate"
    state.write_text("down\n")
    reports = b.link_reports()
    assert {r.device for r in reports if r.health.value == "Unhealthy"} == set(E810_VFS)
    assert [(t.key, t.value, t.effect.value) for t in reports[0].taints] == [(f"{DRIVER}/pf-link-down", "enp23s0f0", "NoSchedule")]
    state.write_text("up\n")
    assert all(r.health.value == "Healthy" and list(r.taints) == [] for r in b.link_reports())


def test_huge_vf_range_is_refused_at_once_by_the_cli(tmp_path):
    """A typo like ``#0-999999999999`` was expanded into a set of every index: discover hung."""
    import subprocess
    import sys
    from pathlib import Path

    host = Path(__file__).resolve().parents[2] / "examples" / "hosts" / "sriov-e810"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drivers:\n- name: sriovnic.dra-framework.io\n  backends:\n  - name: sriov-nic\n"
                   f"    options: {{hostRoot: '{host}', netlink: fake, hotplug: false,\n"
                   "              selectors: [{pfNames: ['enp23s0f0#0-999999999999']}]}\n")
    r = subprocess.run([str(Path(sys.executable).parent / "dra-framework"), "discover", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "options.selectors[0].pfNames" in r.stderr and "VF index 999999999999 is above 65534" in r.stderr
    assert "Traceback" not in r.stderr

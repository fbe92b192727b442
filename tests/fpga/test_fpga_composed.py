"""The N3000 host served by two drivers in one process: fpga (the card's FPGA port) and sriov_nic
(the VFs of the card's first Ethernet port). `dra-framework discover` shows each function once, at
the driver it belongs to; through the kubelet, one pod gets the FPGA port with a new function and
a VF on vfio-pci in one claim (matchAttribute on the standard pcieRoot), each device prepared by
its own driver."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from fpga_helpers import REPO, afu

from dra_framework.testing import wait_for
from dra_framework.testing.hosttree import FakePciKernel

CONFIG = REPO / "examples/configs/fpga-sriov-n3000.yaml"
FPGA, NIC = "fpga.dra-framework.io", "sriovnic.dra-framework.io"
NLB0, NLB3 = "d8424dc4a4a3c413f89e433683f9040b", "f7df405cbd7acf7222f144b0b93acd18"


def test_discover_shows_each_function_at_its_driver():
    out = subprocess.run([sys.executable, "-m", "dra_framework.cli", "discover", "-c", str(CONFIG), "-o", "yaml"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    by_driver: dict[str, list[str]] = {}
    for s in yaml.safe_load(out.stdout)["items"]:
        by_driver.setdefault(s["spec"]["driver"], []).extend(d["name"] for d in s["spec"].get("devices", []))
    assert by_driver[FPGA] == ["dfl-0000-1b-00-0-port0"]
    assert len(by_driver[NIC]) == 2, by_driver[NIC]  # the two VFs of ens785f0, not the PFs, the FPGA or the FEC


@pytest.mark.k8s
def test_one_pod_gets_the_fpga_port_and_a_vf(kube_apiserver, k8s_objects, kubelet_shim, allocator, cdi_check,
                                             dra_driver, tmp_path):
    node = "e2e-n3000"
    host = tmp_path / "host"
    shutil.copytree(REPO / "examples/hosts/fpga-n3000", host, symlinks=True)
    cfg = yaml.safe_load(CONFIG.read_text())
    for d in cfg["drivers"]:
        d["backends"][0]["options"]["hostRoot"] = str(host)
    cfg["drivers"][0]["backends"][0]["options"]["executor"] = "fake"
    with FakePciKernel(host):
        shim = kubelet_shim(node)
        daemon = dra_driver(cfg, shim)
        shim.wait_registered(FPGA, timeout=90)
        shim.wait_registered(NIC, timeout=90)

        def published(driver):
            from lightkube.resources.resource_v1 import ResourceSlice as RS
            return [d["name"] for s in k8s_objects.client.list(RS, fields={"spec.driver": driver})
                    for d in (s.to_dict() if hasattr(s, "to_dict") else dict(s))["spec"].get("devices", [])]
        wait_for(lambda: published(FPGA) and len(published(NIC)) == 2, 90, "both drivers' slices", proc=daemon)
        k8s_objects.device_class(FPGA, FPGA)
        k8s_objects.device_class(NIC, NIC)
        # one claim, one request per driver, on the same PCIe root (the card's): matchAttribute
        # lines up the two drivers' standard attributes
        k8s_objects.resource_claim("default", "card", {"devices": {
            "requests": [{"name": "fpga", "exactly": {"deviceClassName": FPGA, "selectors": [{"cel": {
                             "expression": f"device.attributes['{FPGA}'].board == 'n3000'"}}]}},
                         {"name": "vf", "exactly": {"deviceClassName": NIC}}],
            "constraints": [{"matchAttribute": "resource.kubernetes.io/pcieRoot"}],
            "config": [{"requests": ["fpga"], "opaque": {"driver": FPGA, "parameters": {
                            "apiVersion": "fpga.dra-framework.io/v1alpha1", "kind": "FpgaConfig", "afuId": NLB3}}},
                       {"requests": ["vf"], "opaque": {"driver": NIC, "parameters": {
                            "apiVersion": "sriovnic.dra-framework.io/v1alpha1", "kind": "VfConfig", "driver": "vfio-pci"}}}]}})
        k8s_objects.pod("default", "p", claims=["card"], node=node)
        results = allocator.allocate("default", "card", node, pod=("default", "p"))["devices"]["results"]
        assert sorted((r["driver"], r["request"]) for r in results) == [(FPGA, "fpga"), (NIC, "vf")]
        prepared = shim.prepare_pod("default", "p")
        edits = json.dumps(cdi_check(daemon.cdi_dir, prepared["card"]))
        assert "/dev/dfl-port.0" in edits and f"FPGA_AFU_ID={NLB3}" in edits
        assert "/dev/vfio/4" in edits, edits  # the VF's IOMMU group (40 or 41)
        assert afu(host, "0000:1b:00.0") == NLB3
        shim.unprepare_pod("default", "p")

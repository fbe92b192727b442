"""Health: port error registers, an all-ones afu id, an Alveo card that is not ready, a card that
vanishes during a reset (kept published under its name, tainted, until it is back), instance
renumbering after a reset (same name, new node), and an interrupted programming found at start."""
from __future__ import annotations

import os
import shutil

from fpga_helpers import IMAGE_DIRS, build, port_file

from dra_backends.fpga.backend import FpgaBackend
from dra_backends.fpga.options import FpgaOptions
from dra_framework.api import BackendContext, Inventory

DEV, VF = "dfl-0000-3b-00-2-port1", "0000:3b:00.2"


class Harness:
    def __init__(self, tmp_path, host="fpga-d5005", **opts):
        self.host = build(host, tmp_path / "host")
        self.rediscoveries = 0
        self.ctx = BackendContext(driver_name="fpga.dra-framework.io", node_name="n", host_root=self.host,
                                  state_dir=tmp_path / "state", cdi_root=tmp_path / "cdi",
                                  on_rediscovery=self._rediscover)
        self.opts = {"hostRoot": str(self.host), "imageDirs": IMAGE_DIRS[host], "hotplug": False, **opts}
        self.backend = FpgaBackend(FpgaOptions(**self.opts), self.ctx)
        self.reports = []

    def _rediscover(self):
        self.rediscoveries += 1

    def discover(self):
        inv = Inventory()
        self.backend.dra_discover(inv)
        return {d.name: d for p in inv.pools for d in p.devices}

    def probe(self):
        self.backend.health.once(self.reports.append)
        return {r.device: r for r in self.reports}

    def taints(self, name):
        return [(t.key, t.value) for t in self.probe()[name].taints]


def test_port_errors_and_all_ones_afu_id_taint_until_cleared(tmp_path):
    h = Harness(tmp_path)
    h.discover()
    assert h.taints(DEV) == []
    port_file(h.host, VF, "errors/errors").write_text("0x40\n")
    assert h.taints(DEV) == [("fpga.dra-framework.io/unhealthy", "port-errors")]
    assert "port errors/errors = 0x40" in h.probe()[DEV].message
    port_file(h.host, VF, "errors/errors").write_text("0x0\n")
    port_file(h.host, VF).write_text("f" * 32 + "\n")
    assert h.taints(DEV) == [("fpga.dra-framework.io/unhealthy", "afu-id-invalid")]
    port_file(h.host, VF).write_text("76d7ae9cf66b461f816a5428bcebdbc5\n")
    assert h.taints(DEV) == []


def test_card_vanishing_in_a_reset_keeps_its_name_and_comes_back(tmp_path):
    """The PF and its VFs leave the bus (reset); the devices stay published, tainted missing;
    after the reset the card is back with renumbered DFL instances under the same names."""
    h = Harness(tmp_path)
    before = h.discover()
    saved = tmp_path / "saved"
    links = {}
    for bdf in ("0000:3b:00.0", "0000:3b:00.1", "0000:3b:00.2", "0000:3b:00.3"):
        link = h.host / "sys/bus/pci/devices" / bdf
        links[bdf] = os.readlink(link)
        link.unlink()
    shutil.move(str(h.host / "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.2"), saved)
    h.rediscoveries = 0
    assert h.taints(DEV) == [("fpga.dra-framework.io/unhealthy", "missing")]
    assert h.rediscoveries == 1, "a vanished card must trigger rediscovery"
    during = h.discover()
    assert set(during) == set(before), "devices must not vanish during a reset"
    h.reports.clear()
    h.backend.health.last.clear()
    assert h.taints(DEV) == [("fpga.dra-framework.io/unhealthy", "missing")], "still reported after rediscovery"
    # back, with the port renumbered dfl-port.1 -> dfl-port.7 and a new region number
    shutil.move(str(saved), h.host / "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.2")
    for bdf, target in links.items():
        os.symlink(target, h.host / "sys/bus/pci/devices" / bdf)
    region = next((h.host / "sys/bus/pci/devices" / VF).glob("fpga_region/region*"))
    os.rename(region / "dfl-port.1", region / "dfl-port.7")
    (region / "dfl-port.7" / "dev").write_text("235:7\n")
    assert h.taints(DEV) == []
    after = h.discover()
    assert set(after) == set(before)
    slot = h.backend._slot(DEV)
    assert slot is not None and slot.nodes(False)[0] == ("/dev/dfl-port.7", (235, 7))


def test_missing_card_is_dropped_after_keep_missing(tmp_path):
    h = Harness(tmp_path, keepMissingSeconds=0)
    h.discover()
    (h.host / "sys/bus/pci/devices/0000:3b:00.3").unlink()
    assert "dfl-0000-3b-00-3-port2" not in h.discover()


def test_alveo_not_ready(tmp_path):
    h = Harness(tmp_path, host="fpga-u250")
    h.discover()
    (h.host / "sys/bus/pci/devices/0000:04:00.1/ready").write_text("0x0\n")
    assert h.taints("alveo-0000-04-00") == [("fpga.dra-framework.io/unhealthy", "not-ready")]


def test_interrupted_programming_found_at_start_taints(tmp_path):
    h = Harness(tmp_path)
    h.backend.inflight.set(DEV, state="programming", previous="76d7ae9cf66b461f816a5428bcebdbc5",
                           target="c6aa954a9b914a37abc11d9f0709dcc3")
    again = FpgaBackend(FpgaOptions(**h.opts), h.ctx)  # a restart
    h.backend = again
    h.discover()
    assert ("fpga.dra-framework.io/programming", "interrupted") in h.taints(DEV)
    again.inflight.drop(DEV)
    assert h.taints(DEV) == []

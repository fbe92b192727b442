"""Discovery on the FPGA sample hosts: one device per DFL port / Alveo card with the attributes of
docs/fpga.md; VF ports find their FME through physfn; unusable cards are published tainted with
the reason; a broken card never hides the others."""
from __future__ import annotations

import shutil

import pytest
from fpga_helpers import REPO, build, hosts_module

from dra_backends.fpga import discovery
from dra_backends.fpga.ids import dfl_board, fim_version, normalize_uuid
from dra_framework.testing import tree_snapshot

STD = "resource.kubernetes.io/"


@pytest.mark.parametrize("name", ["fpga-d5005", "fpga-n3000", "fpga-u250"])
def test_sample_host_is_what_the_script_writes(tmp_path, name):
    assert tree_snapshot(REPO / "examples/hosts" / name) == tree_snapshot(build(name, tmp_path / name))


def devices(root):
    return {s.name: s.device() for s in discovery.scan(root)}


def test_d5005_vf_ports_resolve_the_pf_fme(tmp_path):
    devs = devices(build("fpga-d5005", tmp_path))
    assert sorted(devs) == ["dfl-0000-3b-00-1-port0", "dfl-0000-3b-00-2-port1", "dfl-0000-3b-00-3-port2"]
    a = dict(devs["dfl-0000-3b-00-2-port1"].attributes)
    assert a == {
        STD + "pciBusID": "0000:3b:00.2", STD + "pcieRoot": "pci0000:3a", "numaNode": 0, "family": "dfl",
        "vendor": "8086", "deviceID": "bccf", "board": "d5005",
        "interfaceId": "d51533adaee65dab80fba44bbf579b68", "afuId": "76d7ae9cf66b461f816a5428bcebdbc5",
        "bitstreamId": "0x401000287428628", "shell": "Intel FPGA PAC D5005 FIM 4.0.1",
        "fimVersion": a["fimVersion"], "portId": 1}
    assert str(a["fimVersion"].value if hasattr(a["fimVersion"], "value") else a["fimVersion"]).startswith("4.0.1")
    assert all(not d.taints for d in devs.values())


def test_n3000_nics_and_fec_are_left_alone(tmp_path):
    devs = devices(build("fpga-n3000", tmp_path))
    assert list(devs) == ["dfl-0000-1b-00-0-port0"]
    a = devs["dfl-0000-1b-00-0-port0"].attributes
    assert a["board"] == "n3000" and a["deviceID"] == "0b30" and a[STD + "pcieRoot"] == "pci0000:17"
    assert a["interfaceId"] == "f3c9941350814aadbced07eb84a6d0bb" and a["bitstreamId"] == "0x2300011001030f"


def test_u250_pairs_mgmt_and_user_pf(tmp_path):
    devs = devices(build("fpga-u250", tmp_path))
    assert list(devs) == ["alveo-0000-04-00"]
    a = dict(devs["alveo-0000-04-00"].attributes)
    assert a[STD + "pciBusID"] == "0000:04:00.1" and a["mgmtPciBusID"] == "0000:04:00.0"
    assert a["shell"] == "xilinx_u250_gen3x16_xdma_shell_3_1" and a["serial"] == "XFL1P0345SA0"
    assert a["interfaceId"] == "695718ec21a232e45e1afcb4e558e11f" and a["afuId"] == "0" * 32
    assert a["board"] == "u250" and a["family"] == "alveo"


def test_vf_port_without_fme_is_tainted_and_the_others_stay(tmp_path):
    """A VF whose PF shows no FME (SR-IOV on an Arria 10 PAC in the device plugin's bug): the
    port is published tainted no-fme; the other ports are unaffected."""
    host = build("fpga-d5005", tmp_path)
    shutil.rmtree(next((host / "sys/bus/pci/devices/0000:3b:00.0").glob("fpga_region/region0/dfl-fme.0")))
    devs = devices(host)
    assert len(devs) == 3
    for d in devs.values():
        assert [(t.key, t.value) for t in d.taints] == [("fpga.dra-framework.io/unusable", "no-fme")]
        assert d.attributes["unusableReason"].startswith("port found but no FME on its PF 0000:3b:00.0")


def test_unflashed_and_unbound_cards_are_published_tainted(tmp_path):
    host = build("fpga-u250", tmp_path / "u")
    (host / "sys/bus/pci/devices/0000:04:00.1/user_pf").unlink()
    shutil.rmtree(host / "sys/bus/pci/devices/0000:04:00.1/rom.u.1025")
    [card] = devices(host).values()
    assert [(t.key, t.value) for t in card.taints] == [("fpga.dra-framework.io/unusable", "no-shell")]
    host2 = build("fpga-n3000", tmp_path / "n")
    shutil.rmtree(host2 / "sys/bus/pci/devices/0000:1b:00.0/fpga_region")
    [d] = devices(host2).values()
    assert d.name == "dfl-0000-1b-00-0-port0" and d.taints[0].value == "no-fim"


def test_a_broken_card_does_not_stop_the_others(tmp_path, monkeypatch):
    """A second card without a port, then one whose FME cannot be read at all: each is published
    tainted with its reason; the first card stays untainted."""
    host = build("fpga-n3000", tmp_path)
    mod = hosts_module()
    from dra_framework.testing.hosttree import HostTree
    t = HostTree(host)
    t.pci_function("0000:af:00.0", parent="pci0000:ae/0000:ae:00.0", vendor="8086", device="0b30", class_code="120000",
                   driver="dfl-pci")
    mod.dfl_fme(t, "0000:af:00.0", 5, 1, bitstream_id="0x0", interface_id="f" * 32, ports=1)
    # no port on the second card and no VF: FME found but no port
    devs = devices(host)
    assert not devs["dfl-0000-1b-00-0-port0"].taints
    assert devs["dfl-0000-af-00-0-port0"].taints[0].value == "no-port"

    real = discovery.ids.fim_version

    def broken(bid):
        if bid == "0x0":
            raise ValueError("unreadable register")
        return real(bid)
    monkeypatch.setattr(discovery.ids, "fim_version", broken)
    devs = devices(host)
    assert not devs["dfl-0000-1b-00-0-port0"].taints
    assert devs["dfl-0000-af-00-0-port0"].taints[0].value == "error"
    assert "unreadable register" in devs["dfl-0000-af-00-0-port0"].attributes["unusableReason"]


def test_generic_dfl_id_is_told_apart_by_subsystem():
    assert dfl_board("8086", "bcce", "1771").board == "n6001"
    assert dfl_board("8086", "bcce", "1770").board == "n6000"
    assert dfl_board("8086", "bccf", "138d").vf is True
    assert dfl_board("8086", "bcce", "abcd").board == "dfl"
    assert dfl_board("8086", "0d58", None) is None  # an XXV710 of the N3000


def test_ids_normalize():
    assert normalize_uuid("F3C99413-5081-4aad-bced-07eb84a6d0bb") == "f3c9941350814aadbced07eb84a6d0bb"
    assert normalize_uuid("nonsense") is None
    assert fim_version("0x50102022267A9ED") == "5.0.1" and fim_version("0x2300011001030f") == "0.2.3"

"""Prepare through the real engine on the D5005 and U250 sample hosts: the requested function is
loaded by the (fake) executor after every check, journaled first; CDI edits carry the port /
render node with its numbers; failures roll back to the previous function or taint the card;
unprepare loads the configured default function."""
from __future__ import annotations

import json
import os

from fpga_helpers import afu, fpga_config, fpga_env

from dra_backends.fpga.health import assess
from dra_framework.cdi.testing import assert_valid_cdi_dir

HOST_CHAN, HELLO = "76d7ae9cf66b461f816a5428bcebdbc5", "c6aa954a9b914a37abc11d9f0709dcc3"
DEV, VF = "dfl-0000-3b-00-2-port1", "0000:3b:00.2"


def calls(env):
    p = env.state_root / "fpga" / "executor.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def nodes_of(env):
    spec = assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    return [n for s in spec.values() for d in s["devices"] for n in d["containerEdits"].get("deviceNodes", [])]


async def test_prepare_loads_the_function_by_afu_id_and_journals_first(env):
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}], configs=[fpga_config(afuId=HELLO)])
    out = (await engine.prepare([ref]))[ref.uid]
    assert out.error == ""
    assert afu(env.host_root, VF) == HELLO
    [call] = calls(env)
    assert call["device"] == DEV and call["afuId"] == HELLO and call["portId"] == 1 and call["fmeNode"] == "/dev/dfl-fme.0"
    assert call["image"] == f"/srv/intel.com/fpga/d51533adaee65dab80fba44bbf579b68/{HELLO}.gbs"
    cp = json.loads(env.cp_path.read_text().splitlines()[-1])  # header line, then the claims
    journal = next(iter(cp["claims"].values()))["journal"]["fpga"]
    assert journal[f"fpga.program/{DEV}"]["previous"] == HOST_CHAN and journal[f"fpga.program/{DEV}"]["step"] == "done"
    assert {"path": "/dev/dfl-port.1", "type": "c", "major": 235, "minor": 1} in nodes_of(env)
    [(_, [entry])] = env.status_writes
    assert entry["device"] == DEV and entry["data"] == {"afuId": HELLO, "interfaceId": "d51533adaee65dab80fba44bbf579b68",
                                                        "pciBusID": VF}
    assert not any(n["path"].startswith("/dev/dfl-fme") for n in nodes_of(env))
    assert not (env.state_root / "fpga" / "programming.json").exists()
    # a second prepare of the same claim and an unprepare without defaultFunctions keep the function
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert afu(env.host_root, VF) == HELLO and len(calls(env)) == 1


async def test_loaded_function_is_not_rewritten_and_self_mode_adds_the_fme(env):
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}], configs=[fpga_config(afuId=HOST_CHAN, mode="self")])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert calls(env) == []
    assert {"path": "/dev/dfl-fme.0", "type": "c", "major": 236, "minor": 0} in nodes_of(env)


async def test_unprepare_loads_the_default_function(tmp_path):
    env = fpga_env(tmp_path, defaultFunctions={"d51533adaee65dab80fba44bbf579b68": HOST_CHAN})
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}],
                        configs=[fpga_config(image=f"d51533adaee65dab80fba44bbf579b68/{HELLO}.gbs")])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert afu(env.host_root, VF) == HELLO
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert afu(env.host_root, VF) == HOST_CHAN and [c["afuId"] for c in calls(env)] == [HELLO, HOST_CHAN]


async def test_failed_programming_rolls_back_to_the_previous_function(env):
    (env.state_root / "fpga").mkdir(parents=True, exist_ok=True)
    (env.state_root / "fpga" / "executor-fail").write_text("PR error: bitstream CRC mismatch")
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}], configs=[fpga_config(afuId=HELLO)])
    out = (await engine.prepare([ref]))[ref.uid]
    assert "PR error: bitstream CRC mismatch" in out.error
    (env.state_root / "fpga" / "executor-fail").unlink()
    # the rollback ran inside the failed prepare: its restore write failed too (the fail file was
    # still there), so the device is tainted as failed; the next unprepare retry restores it
    backend = env.instances["fpga"]
    state = backend.inflight.all()
    assert state[DEV]["state"] == "failed" and "restoring" in state[DEV]["reason"]
    health, msg, taints = assess(backend._slot(DEV), state[DEV], active=False)
    assert ("fpga.dra-framework.io/programming", "failed") in [(t.key, t.value) for t in taints]


async def test_failure_then_successful_rollback_leaves_no_taint(env, monkeypatch):
    engine = await env.make_engine()
    backend = env.instances["fpga"]
    real = backend.executor.program
    n = {"calls": 0}

    def flaky(target, image):
        n["calls"] += 1
        real(target, image)
        if n["calls"] == 1:  # the first write leaves the region unusable, then fails
            from dra_backends.fpga.executor import ProgramError
            (env.host_root / os.path.relpath(target.port_sysfs, env.host_root) / "afu_id").write_text("f" * 32 + "\n")
            raise ProgramError("PR timed out")
    monkeypatch.setattr(backend.executor, "program", flaky)
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}], configs=[fpga_config(afuId=HELLO)])
    out = (await engine.prepare([ref]))[ref.uid]
    assert "PR timed out" in out.error
    assert afu(env.host_root, VF) == HOST_CHAN, "rollback must load the previous function again"
    assert backend.inflight.all() == {}
    assert env.cdi_files() == []


async def test_rollback_without_an_image_for_the_previous_function_taints(env):
    os.remove(env.host_root / f"srv/intel.com/fpga/d51533adaee65dab80fba44bbf579b68/{HOST_CHAN}.gbs")
    (env.state_root / "fpga").mkdir(parents=True, exist_ok=True)
    (env.state_root / "fpga" / "executor-fail").write_text("PR error")
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": DEV}], configs=[fpga_config(afuId=HELLO)])
    assert "PR error" in (await engine.prepare([ref]))[ref.uid].error
    entry = env.instances["fpga"].inflight.all()[DEV]
    assert entry["state"] == "failed" and f"no image in imageDirs restores {HOST_CHAN}" in entry["reason"]


async def test_alveo_loads_an_xclbin_through_the_mgmt_pf(tmp_path):
    env = fpga_env(tmp_path, host="fpga-u250")
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "fpga", "device": "alveo-0000-04-00"}],
                        configs=[fpga_config(image="vadd.xclbin", mode="self")])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    uuid = (env.host_root / "sys/bus/pci/devices/0000:04:00.1/xclbinuuid").read_text().strip()
    assert uuid == "5909daaf-bf72-a01e-ba62-a15e29b6274b"
    [call] = calls(env)
    assert call["mgmtBdf"] == "0000:04:00.0" and call["family"] == "alveo"
    nodes = nodes_of(env)
    assert {"path": "/dev/dri/renderD129", "type": "c", "major": 226, "minor": 129} in nodes
    assert {"path": "/dev/xclmgmt1024", "type": "c", "major": 237, "minor": 0} in nodes


def test_default_functions_option_is_checked():
    import pytest
    from pydantic import ValidationError

    from dra_backends.fpga.options import FpgaOptions
    o = FpgaOptions.model_validate({"defaultFunctions": {"D51533AD-AEE6-5DAB-80FB-A44BBF579B68": HOST_CHAN.upper()}})
    assert o.default_functions == {"d51533adaee65dab80fba44bbf579b68": HOST_CHAN}
    with pytest.raises(ValidationError, match="keys are interface ids"):
        FpgaOptions.model_validate({"defaultFunctions": {"d5005": HOST_CHAN}})
    with pytest.raises(ValidationError, match="must be an afuId or an image name"):
        FpgaOptions.model_validate({"defaultFunctions": {"d51533adaee65dab80fba44bbf579b68": "../x.gbs"}})


async def test_opae_out_of_tree_driver_layout(tmp_path):
    """OPAE's intel-fpga driver (pr/interface_id, intel-fpga-{fme,port}.N nodes) on an Arria 10 PAC
    (8086:09c4; interface of its DCP 1.2 FIM and NLB0/NLB3 from the Intel device plugin's mappings)."""
    from fpga_helpers import Env, FpgaBackend, FpgaOptions

    from dra_backends.fpga.fake.images import make_gbs
    from dra_framework.testing.hosttree import HostTree
    iface, nlb0, nlb3 = "69528db6eb31577a8c3668f9faa081f6", "d8424dc4a4a3c413f89e433683f9040b", "f7df405cbd7acf7222f144b0b93acd18"
    env = Env(tmp_path, [])
    t = HostTree(env.host_root)
    t.pci_function("0000:5e:00.0", parent="pci0000:5d/0000:5d:00.0", vendor="8086", device="09c4", class_code="120000",
                   driver="intel-fpga-pci", numa_node=0)
    dev = t.device_dir("0000:5e:00.0").relative_to(t.root) / "fpga/intel-fpga-dev.0"
    t.file(dev / "intel-fpga-fme.0/dev", "239:0\n")
    t.file(dev / "intel-fpga-fme.0/pr/interface_id", iface + "\n")
    t.file(dev / "intel-fpga-fme.0/bitstream_id", "0x123000200000185\n")
    t.file(dev / "intel-fpga-port.0/dev", "238:0\n")
    t.file(dev / "intel-fpga-port.0/id", "0\n")
    t.file(dev / "intel-fpga-port.0/afu_id", nlb0 + "\n")
    t.char_device("dev/intel-fpga-fme.0", 239, 0)
    t.char_device("dev/intel-fpga-port.0", 238, 0)
    t.path(f"srv/intel.com/fpga/{iface}").mkdir(parents=True)
    t.path(f"srv/intel.com/fpga/{iface}/{nlb3}.gbs").write_bytes(make_gbs(iface, nlb3, "nlb3"))
    opts = {"hostRoot": str(env.host_root), "imageDirs": ["/srv/intel.com/fpga"], "hotplug": False, "executor": "fake"}
    env.factories = [("fpga", lambda ctx: FpgaBackend(FpgaOptions(**opts), ctx))]
    engine = await env.make_engine()
    [slot] = env.instances["fpga"]._scan()
    assert slot.name == "dfl-0000-5e-00-0-port0" and slot.board == "pac-a10" and slot.interface_id() == iface
    ref = env.add_claim("c", [{"request": "fpga", "device": slot.name}], configs=[fpga_config(afuId=nlb3, mode="self")])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert (env.host_root / dev / "intel-fpga-port.0/afu_id").read_text().strip() == nlb3
    [call] = calls(env)
    assert call["fmeNode"] == "/dev/intel-fpga-fme.0"
    nodes = nodes_of(env)
    assert {"path": "/dev/intel-fpga-port.0", "type": "c", "major": 238, "minor": 0} in nodes
    assert {"path": "/dev/intel-fpga-fme.0", "type": "c", "major": 239, "minor": 0} in nodes

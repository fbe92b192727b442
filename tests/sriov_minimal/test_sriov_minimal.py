"""The sriov-minimal example backend: size, discovery, vfio-pci prepare through the real engine,
rollback and unprepare from the checkpoint journal."""
import ast
import json

from sriov_helpers import REPO, Env, build_sample_host

import dra_sriov_minimal
from dra_framework.api import Inventory, PciFunction
from dra_framework.cdi.testing import assert_valid_cdi_dir

PKG = REPO / "examples/sriov-minimal"
VFS = ["0000:17:01.0", "0000:17:01.1", "0000:17:01.2", "0000:17:01.3"]


def code_lines(path) -> int:
    """Non-blank, non-comment, non-docstring lines."""
    src = path.read_text()
    doc = set()
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            doc.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i, line in enumerate(src.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in doc)


def test_backend_is_at_most_60_lines():
    files = sorted(PKG.rglob("*.py"))
    assert files and all("dra_sriov_minimal" in f.parts for f in files)
    total = sum(code_lines(f) for f in files)
    assert total <= 60, f"examples/sriov-minimal is {total} lines of code"


def test_code_line_counter_can_fail(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""doc\nstring"""\n# comment\n\nx = 1\ndef f():\n    """d"""\n    return x\n')
    assert code_lines(f) == 3


def test_registered_through_its_entry_point():
    from importlib.metadata import entry_points
    eps = {ep.name: ep.value for ep in entry_points(group="dra_framework.backends")}
    assert eps.get("sriov-minimal") == "dra_sriov_minimal"


def test_discovery_one_device_per_vf_with_eight_attributes(tmp_path):
    host = build_sample_host(tmp_path / "host")
    ctx = Env(tmp_path, []).context("sriov")
    ctx.host_root = host
    inv = Inventory()
    dra_sriov_minimal.SriovBackend(dra_sriov_minimal.Options(hotplug=False), ctx).dra_discover(inv)
    devices = {d.name: d for p in inv.pools for d in p.devices}
    assert sorted(devices) == ["vf-0000-17-01-0", "vf-0000-17-01-1", "vf-0000-17-01-2", "vf-0000-17-01-3"]
    d3 = devices["vf-0000-17-01-3"]
    assert dict(d3.attributes) == {
        "resource.kubernetes.io/pciBusID": "0000:17:01.3", "resource.kubernetes.io/pcieRoot": "pci0000:16",
        "vendor": "8086", "deviceID": "1889", "vfIndex": 3, "pfPciAddress": "0000:17:00.0",
        "pfName": "enp23s0f0", "numaNode": 0}
    assert all(len(d.attributes) == 8 for d in devices.values())


async def test_prepare_binds_vfio_and_unprepare_restores(env):
    engine = await env.make_engine()
    ref = env.add_claim("vf", [{"request": "nic", "device": "vf-0000-17-01-0"}])
    out = (await engine.prepare([ref]))[ref.uid]
    assert out.error == ""
    fn = PciFunction.at(env.host_root, VFS[0])
    assert fn.driver == "vfio-pci" and fn.driver_override is None
    spec = assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    text = json.dumps(spec)
    assert '"/dev/vfio/17"' in text and '"PCIDEVICE_VF_0000_17_01_0=0000:17:01.0"' in text
    nodes = [n for s in spec.values() for d in s["devices"] for n in d["containerEdits"]["deviceNodes"]]
    assert {"path": "/dev/vfio/vfio", "type": "c", "major": 10, "minor": 196} in nodes
    cp = env.cp_path.read_text().replace(" ", "")  # the journal went to disk before the rebinding
    assert '"pci.rebind/0000:17:01.0":{"bdf":"0000:17:01.0","original":"iavf"' in cp
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert fn.driver == "iavf" and env.cdi_files() == []


async def test_a_vf_already_on_vfio_is_left_as_it_is(env):
    engine = await env.make_engine()
    ref = env.add_claim("vf3", [{"request": "nic", "device": "vf-0000-17-01-3"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert PciFunction.at(env.host_root, VFS[3]).driver == "vfio-pci"


async def test_failed_prepare_rolls_back_every_vf(env):
    """The second VF has no IOMMU group: the claim fails, both VFs are back on iavf."""
    (env.host_root / "sys/bus/pci/devices" / VFS[1] / "iommu_group").unlink()
    engine = await env.make_engine()
    ref = env.add_claim("two", [{"request": "a", "device": "vf-0000-17-01-0"},
                                {"request": "b", "device": "vf-0000-17-01-1"}])
    out = (await engine.prepare([ref]))[ref.uid]
    assert "VF 0000:17:01.1 has no IOMMU group" in out.error
    assert [PciFunction.at(env.host_root, v).driver for v in VFS[:2]] == ["iavf", "iavf"]
    assert env.cdi_files() == []


async def test_unprepare_after_restart_uses_the_checkpoint_alone(env):
    """A new process (new engine and backend instance) restores from the checkpoint's journal."""
    engine = await env.make_engine()
    ref = env.add_claim("vf", [{"request": "nic", "device": "vf-0000-17-01-2"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert PciFunction.at(env.host_root, VFS[2]).driver == "vfio-pci"
    env.delete_claim(ref)  # the API server has nothing to say any more
    engine2 = await env.make_engine()
    assert await engine2.unprepare([ref]) == {ref.uid: ""}
    assert PciFunction.at(env.host_root, VFS[2]).driver == "iavf"


async def test_after_a_reboot_nothing_is_rebound(env):
    engine = await env.make_engine()
    ref = env.add_claim("vf", [{"request": "nic", "device": "vf-0000-17-01-1"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    engine2 = await env.make_engine(boot_id="boot-2")
    assert await engine2.unprepare([ref]) == {ref.uid: ""}
    assert PciFunction.at(env.host_root, VFS[1]).driver == "vfio-pci"  # a reboot would have reset it


async def test_no_iommu_mode_hands_out_the_noiommu_node(env):
    """A VFIO no-IOMMU group: the container gets /dev/vfio/noiommu-<group>."""
    (env.host_root / "sys/kernel/iommu_groups/18/name").write_text("vfio-noiommu\n")
    engine = await env.make_engine()
    ref = env.add_claim("vf", [{"request": "nic", "device": "vf-0000-17-01-1"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    spec = assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    nodes = [n for s in spec.values() for d in s["devices"] for n in d["containerEdits"]["deviceNodes"]]
    assert {"path": "/dev/vfio/noiommu-18", "type": "c", "major": 243, "minor": 1} in nodes
    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert not (env.host_root / "dev/vfio/noiommu-18").exists()


async def test_vfio_pci_not_loaded_fails_the_claim_clearly_and_restores(env):
    import shutil
    shutil.rmtree(env.host_root / "sys/bus/pci/drivers/vfio-pci")
    engine = await env.make_engine()
    ref = env.add_claim("vf", [{"request": "nic", "device": "vf-0000-17-01-0"}])
    out = (await engine.prepare([ref]))[ref.uid]
    assert "rebinding PCI device 0000:17:01.0 to vfio-pci: driver vfio-pci is not loaded" in out.error
    assert PciFunction.at(env.host_root, VFS[0]).driver == "iavf" and env.cdi_files() == []

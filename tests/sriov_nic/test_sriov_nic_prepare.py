"""sriov_nic prepare/unprepare through the hooks, on sample-host copies: netdev hand-off with CDI
netDevices, VF properties through the PF (journaled before each change, restored after),
vfio-pci rebinding through the kit, RDMA and vhost device nodes, claim status."""
from __future__ import annotations

import json
import shutil

import pytest
from sriov_nic_helpers import allocated, backend, claim_ctx, discover, stored, vf_config

from dra_framework.api import PciFunction

from dra_backends.sriov_nic.prepare import MTU_KEY, VF_KEY


def _state(root):
    return json.loads((root / "fake-netlink.json").read_text())["vfs"]


async def test_netdev_mode_sets_vf_through_pf_journaled_first(e810):
    root = e810.root
    b = backend(root)
    devs = discover(b)
    original = _state(root)
    ctx = claim_ctx(b)
    cfg = vf_config(ifName="eth1", mac="02:00:00:00:00:21", vlan=42, trust=True, spoofChk=False, mtu=9000)
    res = await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-1", cfg)])
    out = res.devices["vf-0000-17-01-1"]
    edits = out.edits
    assert [(n.host_interface_name, n.name) for n in edits.net_devices] == [("enp23s0f0v1", "eth1")]
    assert edits.env == {"SRIOVNIC_VF_0000_17_01_1": "0000:17:01.1"}
    assert _state(root)["enp23s0f0"]["1"] == {"mac": "02:00:00:00:00:21", "vlan": 42, "trust": True, "spoofchk": False}
    assert (root / "sys/class/net/enp23s0f0v1/mtu").read_text() == "9000\n"
    # each change ran only after its journal entry (with the original values) was recorded
    (op1, _a1, j1), (op2, _a2, j2) = b.netlink.calls
    assert op1 == "set_vf" and j1[VF_KEY + "0000:17:01.1"]["original"] == original["enp23s0f0"]["1"]
    assert op2 == "set_mtu" and j2[MTU_KEY + "0000:17:01.1"] == {"ifname": "enp23s0f0v1", "original": 1500}
    assert out.status.network_data.interface_name == "eth1"
    assert out.status.network_data.hardware_address == "02:00:00:00:00:21"
    assert out.status.data["mode"] == "netdev" and out.status.data["vlan"] == 42 and out.status.data["mtu"] == 9000

    await b.dra_unprepare(stored(ctx))
    assert _state(root) == original
    assert (root / "sys/class/net/enp23s0f0v1/mtu").read_text() == "1500\n"
    await b.dra_unprepare(stored(ctx))  # idempotent
    assert _state(root) == original


async def test_class_then_claim_precedence(e810):
    """A class config's vlan and mtu are kept; the claim config overrides vlan only."""
    b = backend(e810.root)
    devs = discover(b)
    ctx = claim_ctx(b)
    res = await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-0", vf_config(vlan=10, mtu=9000), vf_config(vlan=20))])
    data = res.devices["vf-0000-17-01-0"].status.data
    assert (data["vlan"], data["mtu"], data["ifName"]) == (20, 9000, "enp23s0f0v0")
    await b.dra_unprepare(stored(ctx))


async def test_unprepare_when_the_netdev_is_gone(e810):
    """The pod's namespace still holds (or took down) the VF netdev: the PF-side settings are
    reset anyway and unprepare does not fail."""
    root = e810.root
    b = backend(root)
    devs = discover(b)
    original = _state(root)
    ctx = claim_ctx(b)
    await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-0", vf_config(mac="02:00:00:00:00:01", mtu=4000))])
    shutil.rmtree(PciFunction.at(root, "0000:17:01.0").path / "net")  # moved into the pod's netns
    (root / "sys/class/net/enp23s0f0v0").unlink()
    await b.dra_unprepare(stored(ctx))
    assert _state(root) == original


async def test_vfio_mode_rebinds_and_restores(e810):
    root = e810.root
    b = backend(root)
    devs = discover(b)
    ctx = claim_ctx(b)
    res = await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-2", vf_config(driver="vfio-pci", vlan=7))])
    edits = res.devices["vf-0000-17-01-2"].edits
    assert [n.path for n in edits.device_nodes] == ["/dev/vfio/19", "/dev/vfio/vfio"]
    assert edits.env["SRIOVNIC_VF_0000_17_01_2_VFIO"] == "/dev/vfio/19" and not edits.net_devices
    vf = PciFunction.at(root, "0000:17:01.2")
    assert vf.driver == "vfio-pci" and ctx.journal["pci.rebind/0000:17:01.2"]["original"] == "iavf"
    assert ("drivers/iavf/unbind", "0000:17:01.2") in e810.writes and ("drivers/vfio-pci/bind", "0000:17:01.2") in e810.writes
    await b.dra_unprepare(stored(ctx))
    assert vf.driver == "iavf" and vf.driver_override is None
    assert _state(root)["enp23s0f0"]["2"]["vlan"] == 0


async def test_driver_default_returns_a_vfio_vf_to_its_kernel_driver(e810):
    root = e810.root
    b = backend(root, netdevWaitSeconds=0.1)
    devs = discover(b)
    ctx = claim_ctx(b)
    with pytest.raises(RuntimeError, match="no network interface"):  # the fake kernel makes no netdev
        await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-3", vf_config(driver="default"))])
    assert PciFunction.at(root, "0000:17:01.3").driver == "iavf"
    await b.dra_unprepare(stored(ctx, completed=False))  # rollback restores vfio-pci
    assert PciFunction.at(root, "0000:17:01.3").driver == "vfio-pci"


async def test_vf_already_on_vfio_keeps_it(e810):
    b = backend(e810.root)
    devs = discover(b)
    ctx = claim_ctx(b)
    res = await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-3")])
    assert [n.path for n in res.devices["vf-0000-17-01-3"].edits.device_nodes] == ["/dev/vfio/20", "/dev/vfio/vfio"]
    assert not e810.writes and not ctx.journal


async def test_rdma_and_vhost_nodes(cx6dx):
    b = backend(cx6dx.root)
    devs = discover(b)
    ctx = claim_ctx(b)
    res = await b.dra_prepare(ctx, [allocated(devs, "vf-0000-c1-00-3", vf_config(vhost=True)),
                                    allocated(devs, "vf-0000-c1-00-4", vf_config(rdma=False))])
    e = res.devices["vf-0000-c1-00-3"].edits
    assert [(n.path, n.major, n.minor) for n in e.device_nodes] == [
        ("/dev/infiniband/uverbs3", 231, 195), ("/dev/infiniband/issm3", 231, 67), ("/dev/infiniband/umad3", 231, 3),
        ("/dev/infiniband/rdma_cm", 10, 58), ("/dev/vhost-net", 10, 238), ("/dev/net/tun", 10, 200)]
    assert e.env["SRIOVNIC_VF_0000_C1_00_3_RDMA_DEVICE"] == "mlx5_3"
    assert [n.name for n in e.net_devices] == ["enp193s0f0v1"]
    e2 = res.devices["vf-0000-c1-00-4"].edits
    assert not e2.device_nodes and [n.name for n in e2.net_devices] == ["enp193s0f0v2"]
    assert res.devices["vf-0000-c1-00-3"].status.data["rdmaDevice"] == "mlx5_3"


@pytest.mark.parametrize("cfg, error", [
    (dict(driver="vfio-pci", mtu=9000), "mtu needs the VF's kernel netdev"),
    (dict(rdma=True), "has no RDMA device"),
])
async def test_config_errors_name_the_device(e810, cfg, error):
    b = backend(e810.root)
    devs = discover(b)
    ctx = claim_ctx(b)
    with pytest.raises(ValueError, match=error) as e:
        await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-0", vf_config(**cfg))])
    assert "vf-0000-17-01-0" in str(e.value)
    await b.dra_unprepare(stored(ctx, completed=False))
    assert PciFunction.at(e810.root, "0000:17:01.0").driver == "iavf"


@pytest.mark.parametrize("fields, error", [
    ({"mac": "01:00:00:00:00:01"}, "multicast"), ({"vlan": 4095}, "vlan"), ({"ifName": "a/b"}, "interface name"),
    ({"driver": "igb_uio"}, "driver"), ({"vlans": 3}, "vlans"),
])
def test_vfconfig_strict(fields, error):
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=error):
        vf_config(**fields)


async def test_admin_access_changes_nothing(e810):
    root = e810.root
    b = backend(root)
    devs = discover(b)
    original = _state(root)
    ctx = claim_ctx(b)
    await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-0", vf_config(driver="vfio-pci", vlan=9), admin=True)])
    assert not ctx.journal and _state(root) == original and PciFunction.at(root, "0000:17:01.0").driver == "iavf"


async def test_vf_removed_before_prepare(e810):
    root = e810.root
    b = backend(root)
    devs = discover(b)
    (root / "sys/bus/pci/devices/0000:17:01.1").unlink()
    with pytest.raises(RuntimeError, match="VF 0000:17:01.1.*gone"):
        await b.dra_prepare(claim_ctx(b), [allocated(devs, "vf-0000-17-01-1")])


async def test_network_data_without_administrative_mac(e810):
    b = backend(e810.root)
    devs = discover(b)
    res = await b.dra_prepare(claim_ctx(b), [allocated(devs, "vf-0000-17-01-0")])
    assert res.devices["vf-0000-17-01-0"].status.network_data.hardware_address == "ea:3e:5f:11:8b:20"


async def test_vfio_noiommu_group_node(e810):
    """In VFIO no-IOMMU mode the group node is /dev/vfio/noiommu-<group> (docs/pci.md)."""
    root = e810.root
    (root / "sys/kernel/iommu_groups/19/name").write_text("vfio-noiommu\n")
    b = backend(root)
    devs = discover(b)
    ctx = claim_ctx(b)
    res = await b.dra_prepare(ctx, [allocated(devs, "vf-0000-17-01-2", vf_config(driver="vfio-pci"))])
    nodes = res.devices["vf-0000-17-01-2"].edits.device_nodes
    assert [n.path for n in nodes] == ["/dev/vfio/noiommu-19", "/dev/vfio/vfio"] and nodes[0].major == 243
    await b.dra_unprepare(stored(ctx))
    assert not (root / "dev/vfio/noiommu-19").exists()

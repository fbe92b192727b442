"""ContainerEdits model and merge() (issue 5, item 1)."""
import pytest
from pydantic import ValidationError

from dra_framework.cdi import CdiConflictError, ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice, merge


def test_to_cdi_uses_cdi_field_names_and_omits_empty():
    e = ContainerEdits(
        env={"A": "1", "B": ""},
        device_nodes=[DeviceNode(path="/dev/x", host_path="/dev/y", type="c", major=195, minor=0,
                                 file_mode=0o666, permissions="rw", uid=0, gid=0)],
        mounts=[Mount(host_path="/h", container_path="/c", type="bind", options=["ro", "bind"])],
        hooks=[Hook(hook_name="createContainer", path="/bin/hook", args=["hook", "x"], env=["K=V"], timeout=5)],
        additional_gids=[44],
        net_devices=[NetDevice(host_interface_name="eth1", name="net1")],
        intel_rdt=IntelRdt(clos_id="c1", schemata=[]),
    )
    assert e.to_cdi() == {
        "env": ["A=1", "B="],
        "deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/y", "type": "c", "major": 195, "minor": 0,
                         "fileMode": 438, "permissions": "rw", "uid": 0, "gid": 0}],
        "mounts": [{"hostPath": "/h", "containerPath": "/c", "type": "bind", "options": ["ro", "bind"]}],
        "hooks": [{"hookName": "createContainer", "path": "/bin/hook", "args": ["hook", "x"], "env": ["K=V"],
                   "timeout": 5}],
        "additionalGids": [44],
        "netDevices": [{"hostInterfaceName": "eth1", "name": "net1"}],
        "intelRdt": {"closID": "c1", "schemata": []},
    }
    assert ContainerEdits.from_cdi(e.to_cdi()) == e
    assert ContainerEdits().to_cdi() == {} and ContainerEdits().is_empty()
    hash(e)  # frozen models are hashable


def test_env_list_is_converted_last_wins():
    e = ContainerEdits(env=["A=1", "B=2", "A=3"])
    assert e.env == {"B": "2", "A": "3"}
    assert e.to_cdi()["env"] == ["B=2", "A=3"]


@pytest.mark.parametrize("kwargs", [
    {"env": ["=x"]}, {"env": ["NOEQ"]}, {"env": {"": "x"}}, {"env": {"A=B": "x"}},
    {"device_nodes": [{"path": ""}]}, {"device_nodes": [{"path": "/dev/x", "type": "x"}]},
    {"device_nodes": [{"path": "/dev/x", "permissions": "none"}]},
    {"device_nodes": [{"path": "/dev/x", "uid": -1}]},
    {"hooks": [{"hookName": "preStart", "path": "/x"}]},
    {"hooks": [{"hookName": "prestart", "path": "/x", "timeout": 0}]},
    {"hooks": [{"hookName": "prestart", "path": "/x", "env": ["bad"]}]},
    {"mounts": [{"hostPath": "", "containerPath": "/c"}]},
    {"net_devices": [{"hostInterfaceName": "", "name": "x"}]},
    {"intel_rdt": {"closID": ".."}},
    {"additional_gids": [2**32]},
    {"bogus": 1},
])
def test_model_rejects_invalid(kwargs):
    with pytest.raises(ValidationError):
        ContainerEdits(**kwargs)


def test_frozen():
    with pytest.raises(ValidationError):
        DeviceNode(path="/dev/x").path = "/dev/y"


def test_merge_order_and_dedup():
    n0, n1 = DeviceNode(path="/dev/a"), DeviceNode(path="/dev/b")
    m = Mount(host_path="/h", container_path="/c", options=["ro"])
    h = Hook(hook_name="poststop", path="/bin/x")
    a = ContainerEdits(env={"A": "1"}, device_nodes=[n0], mounts=[m], hooks=[h], additional_gids=[5, 6])
    b = ContainerEdits(env={"B": "2", "A": "1"}, device_nodes=[n1, n0], mounts=[m], hooks=[h], additional_gids=[6, 7],
                       net_devices=[NetDevice(host_interface_name="eth0", name="n0")])
    out = merge([a, b])
    assert list(out.env.items()) == [("A", "1"), ("B", "2")]
    assert out.device_nodes == (n0, n1)
    assert out.mounts == (m,) and out.hooks == (h,)
    assert out.additional_gids == (5, 6, 7)
    assert merge([a, b]) == out  # deterministic
    assert merge([]) == ContainerEdits()


@pytest.mark.parametrize("field,first,second", [
    ("env", ContainerEdits(env={"A": "1"}), ContainerEdits(env={"A": "2"})),
    ("mounts", ContainerEdits(mounts=[Mount(host_path="/h1", container_path="/c")]),
     ContainerEdits(mounts=[Mount(host_path="/h2", container_path="/c")])),
    ("mounts", ContainerEdits(mounts=[Mount(host_path="/h", container_path="/c", options=["ro"])]),
     ContainerEdits(mounts=[Mount(host_path="/h", container_path="/c", options=["rw"])])),
    ("deviceNodes", ContainerEdits(device_nodes=[DeviceNode(path="/dev/x", host_path="/dev/a")]),
     ContainerEdits(device_nodes=[DeviceNode(path="/dev/x", host_path="/dev/b")])),
    ("netDevices", ContainerEdits(net_devices=[NetDevice(host_interface_name="eth0", name="n")]),
     ContainerEdits(net_devices=[NetDevice(host_interface_name="eth1", name="n")])),
    ("netDevices", ContainerEdits(net_devices=[NetDevice(host_interface_name="eth0", name="n0")]),
     ContainerEdits(net_devices=[NetDevice(host_interface_name="eth0", name="n1")])),
    ("intelRdt", ContainerEdits(intel_rdt=IntelRdt(clos_id="a")), ContainerEdits(intel_rdt=IntelRdt(clos_id="b"))),
])
def test_merge_conflicts_name_both_sources(field, first, second):
    with pytest.raises(CdiConflictError) as ei:
        merge([("backend:gpu-0", first), ("claim-config", second)])
    err = ei.value
    assert isinstance(err, ValueError)
    assert err.field == field
    assert (err.first_source, err.second_source) == ("backend:gpu-0", "claim-config")
    assert "backend:gpu-0" in str(err) and "claim-config" in str(err)


def test_merge_default_source_labels():
    with pytest.raises(CdiConflictError, match=r"edits\[0\].*edits\[2\]"):
        merge([ContainerEdits(env={"A": "1"}), ContainerEdits(), ContainerEdits(env={"A": "2"})])

"""Host-root transform (issue 5, item 6)."""
import pytest

from dra_framework.cdi import ContainerEdits, DeviceNode, Hook, Mount, apply_host_root, map_host_path

M = {"/driver-root": "/"}


@pytest.mark.parametrize("path,expected", [
    ("/driver-root/dev/nvidia0", "/dev/nvidia0"),
    ("/driver-root", "/"),
    ("/driver-root/", "/"),
    ("/driver-rootfs/dev/x", "/driver-rootfs/dev/x"),  # component boundary
    ("/dev/nvidia0", "/dev/nvidia0"),
    ("relative/x", "relative/x"),
    ("/driver-root/a/../b", "/b"),
])
def test_map_host_path(path, expected):
    assert map_host_path(path, M) == expected


def test_longest_prefix_wins_and_non_root_host_prefix():
    m = {"/host": "/", "/host/opt/driver": "/run/driver"}
    assert map_host_path("/host/opt/driver/lib/x.so", m) == "/run/driver/lib/x.so"
    assert map_host_path("/host/usr/lib/x.so", m) == "/usr/lib/x.so"
    with pytest.raises(ValueError):
        map_host_path("/x", {"rel": "/"})


def test_apply_host_root():
    e = ContainerEdits(
        env={"A": "1"},
        device_nodes=[DeviceNode(path="/dev/nvidia0", host_path="/driver-root/dev/nvidia0"),
                      DeviceNode(path="/dev/nvidia1", host_path="/driver-root/dev/nvidia-alt"),
                      DeviceNode(path="/driver-root/dev/nvidiactl"),
                      DeviceNode(path="/dev/fuse")],
        mounts=[Mount(host_path="/driver-root/usr/bin/smi", container_path="/usr/bin/smi", options=["ro", "bind"]),
                Mount(host_path="tmpfs", container_path="/scratch", type="tmpfs")],
        hooks=[Hook(hook_name="createContainer", path="/driver-root/usr/bin/hook", args=["/driver-root/x"])],
    )
    out = apply_host_root(e, M)
    assert [(n.path, n.host_path) for n in out.device_nodes] == [
        ("/dev/nvidia0", None),                      # same as container path -> hostPath dropped
        ("/dev/nvidia1", "/dev/nvidia-alt"),
        ("/driver-root/dev/nvidiactl", "/dev/nvidiactl"),  # container path unchanged
        ("/dev/fuse", None),
    ]
    assert [(m.host_path, m.container_path) for m in out.mounts] == [("/usr/bin/smi", "/usr/bin/smi"),
                                                                      ("tmpfs", "/scratch")]
    assert out.hooks[0].path == "/usr/bin/hook" and out.hooks[0].args == ("/driver-root/x",)
    assert out.env == e.env
    assert apply_host_root(e, None) is e and apply_host_root(e, {}) is e

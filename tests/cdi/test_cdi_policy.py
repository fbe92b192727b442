"""What backend-supplied CDI edits may do (per-backend policy) and that their host paths exist."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from dra_framework.cdi import ContainerEdits, DeviceNode, Mount
from dra_framework.cdi.edits import Hook
from dra_framework.cdi.policy import CdiPolicy, check_edits, missing_host_paths, path_allowed, policy_violations

NVIDIA_POLICY = CdiPolicy(device_nodes=("/dev/nvidia*",), mounts=("/usr/lib", "/usr/bin"),
                          hooks=("/usr/bin/nvidia-cdi-hook",), env=("NVIDIA_*",))

#: Edits a third-party backend could return that no container should get by default.
ATTACKS = {
    "host root read-write": ContainerEdits(mounts=(Mount(host_path="/", container_path="/host"),)),
    "host root read-only": ContainerEdits(mounts=(Mount(host_path="/", container_path="/host", options=("ro",)),)),
    "containerd socket": ContainerEdits(mounts=(Mount(host_path="/run/containerd/containerd.sock",
                                                      container_path="/c.sock", options=("ro",)),)),
    "shell hook": ContainerEdits(hooks=(Hook(hook_name="createRuntime", path="/bin/sh", args=("sh", "-c", "id")),)),
    "disk": ContainerEdits(device_nodes=(DeviceNode(path="/dev/sda", type="b", major=8, minor=0),)),
    "LD_PRELOAD": ContainerEdits(env={"LD_PRELOAD": "/tmp/x.so"}),
    "climb out": ContainerEdits(device_nodes=(DeviceNode(path="/dev/nvidia0/../../etc/shadow"),)),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("policy", [CdiPolicy(), NVIDIA_POLICY], ids=["framework-default", "nvidia-like"])
def test_attacks_are_refused(name, policy):
    assert policy_violations(ATTACKS[name], policy), name


def test_messages_name_the_edit_and_the_rule():
    (msg,) = policy_violations(ATTACKS["shell hook"], CdiPolicy())
    assert msg == "hooks[0] createRuntime /bin/sh: hook executable not allowed (hooks: [])"
    (msg,) = policy_violations(ATTACKS["LD_PRELOAD"], CdiPolicy())
    assert msg == "env LD_PRELOAD: name refused (envDeny: ['LD_*'])"
    (msg,) = policy_violations(ContainerEdits(mounts=(Mount(host_path="/usr/lib/x", container_path="/x"),)),
                               NVIDIA_POLICY)
    assert "read-write mount not allowed" in msg


def test_path_patterns_match_whole_components():
    assert path_allowed("/dev/nvidia0", ["/dev/nvidia*"])
    assert path_allowed("/dev/nvidia-caps/nvidia-cap3", ["/dev/nvidia*"])
    assert not path_allowed("/dev/sda", ["/dev/nvidia*"])
    assert path_allowed("/usr/lib/x86_64-linux-gnu/libcuda.so.1", ["/usr/lib"])
    assert not path_allowed("/usr/lib64/x", ["/usr/lib"])
    assert not path_allowed("/usr/lib/../../etc/passwd", ["/usr/lib"])
    assert path_allowed("/anything", ["/"])


def test_admin_overlay_replaces_only_the_fields_set():
    admin = CdiPolicy.model_validate({"hooks": ["/opt/hooks/*"], "readWriteMounts": True})
    p = NVIDIA_POLICY.overlay(admin)
    assert p.hooks == ("/opt/hooks/*",) and p.read_write_mounts and p.device_nodes == ("/dev/nvidia*",)
    with pytest.raises(ValidationError, match="must be absolute"):
        CdiPolicy.model_validate({"mounts": ["usr/lib"]})


def test_host_paths_must_exist_under_the_host_root(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/acc0").touch()
    edits = ContainerEdits(device_nodes=(DeviceNode(path="/dev/acc0"), DeviceNode(path="/dev/acc1")),
                           mounts=(Mount(host_path="/opt/lib", container_path="/lib", options=("ro",)),),
                           hooks=(Hook(hook_name="createContainer", path="/usr/bin/hook"),))
    missing = missing_host_paths(edits, tmp_path)
    assert missing == [f"deviceNodes[1] /dev/acc1: {tmp_path}/dev/acc1 does not exist",
                       f"mounts[0] /opt/lib -> /lib: {tmp_path}/opt/lib does not exist",
                       f"hooks[0] createContainer /usr/bin/hook: {tmp_path}/usr/bin/hook does not exist"]
    # A self-contained node (type + major/minor) is created by the runtime: a note, not an error.
    notes: list[str] = []
    nodes = ContainerEdits(device_nodes=(DeviceNode(path="/dev/acc2", type="c", major=240, minor=2),))
    assert check_edits(nodes, CdiPolicy(), tmp_path, notes) == [] and "type/major/minor" in notes[0]

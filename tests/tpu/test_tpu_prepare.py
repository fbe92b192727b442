"""Prepare of the tpu backend: device nodes and the TPU runtime's environment per shape, the
open-chip check through /proc/*/fd, chip leases, TpuConfig for multi-host slices."""
from __future__ import annotations

import json

import pydantic
import pytest
from tpu_helpers import backend, build_host, discover, prepare, unprepare

from dra_framework.testing.hosttree import HostTree


@pytest.fixture
def v5e(tmp_path):
    b = backend(build_host("tpu-v5e-8", tmp_path / "h"), tmp_path / "s")
    return b, discover(b)


def test_2x2_claim_gets_its_chips_and_the_runtime_env(v5e):
    b, devs = v5e
    result, _ = prepare(b, [devs["tpu-2x2-1"]])
    assert result.claim_edits.env == {
        "TPU_VISIBLE_CHIPS": "4,5,6,7", "TPU_CHIPS_PER_PROCESS_BOUNDS": "2,2,1", "TPU_PROCESS_BOUNDS": "1,1,1",
        "TPU_ACCELERATOR_TYPE": "v5litepod-4", "TPU_TOPOLOGY": "2x2", "TPU_WORKER_ID": "0",
        "TPU_WORKER_HOSTNAMES": "localhost", "TPU_SKIP_MDS_QUERY": "true", "TPU_PROCESS_PORT": "8480",
        "TPU_PROCESS_ADDRESSES": "localhost:8480"}
    nodes = result.devices["tpu-2x2-1"].edits.device_nodes
    assert [(n.path, n.type, n.major, n.minor) for n in nodes] == \
        [(f"/dev/vfio/{i}", "c", 239, i) for i in range(4, 8)] + [("/dev/vfio/vfio", "c", 10, 196)]


def test_sub_slices_get_distinct_ports(v5e):
    b, devs = v5e
    ports = {}
    for i, name in enumerate(["tpu-2x2-0", "tpu-1x2-2", "tpu-0000-00-0a-0", "tpu-0000-00-0b-0"]):
        result, _ = prepare(b, [devs[name]], uid=f"u{i}")
        ports[name] = result.claim_edits.env["TPU_PROCESS_PORT"]
    assert len(set(ports.values())) == 4, ports


def test_whole_host_env(v5e):
    b, devs = v5e
    env = prepare(b, [devs["tpu-host"]])[0].claim_edits.env
    assert env["TPU_VISIBLE_CHIPS"] == "0,1,2,3,4,5,6,7" and env["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "2,4,1"
    assert env["TPU_TOPOLOGY"] == "2x4" and env["TPU_ACCELERATOR_TYPE"] == "v5litepod-8"


def test_v4_accel_node(tmp_path):
    b = backend(build_host("tpu-v4-4", tmp_path / "h"), tmp_path / "s", acceleratorType="v4-8")
    devs = discover(b)
    result, _ = prepare(b, [devs["tpu-1x2x1-1"]])
    assert [n.path for n in result.devices["tpu-1x2x1-1"].edits.device_nodes] == ["/dev/accel2", "/dev/accel3"]
    assert result.claim_edits.env["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,2,1"
    assert result.claim_edits.env["TPU_ACCELERATOR_TYPE"] == "v4-4"


def test_two_devices_in_one_claim_fail_naming_them(v5e):
    b, devs = v5e
    with pytest.raises(ValueError, match="devices tpu-0000-00-04-0, tpu-0000-00-05-0 of one claim"):
        prepare(b, [devs["tpu-0000-00-04-0"], devs["tpu-0000-00-05-0"]])


def _open_chip(host, pid: int, comm: str, node: str) -> None:
    t = HostTree(host)
    t.file(f"proc/{pid}/comm", f"{comm}\n")
    t.symlink(f"proc/{pid}/fd/7", node)


def test_chip_open_by_unknown_process_fails_naming_it(v5e, tmp_path):
    b, devs = v5e
    _open_chip(tmp_path / "h", 4242, "python3", "/dev/vfio/6")
    with pytest.raises(RuntimeError, match=r"TPU chip 0000:00:0a.0: /dev/vfio/6 is open in pid 4242 \(python3\)"):
        prepare(b, [devs["tpu-2x2-1"]])
    assert json.loads((tmp_path / "s/leases.json").read_text() if (tmp_path / "s/leases.json").exists() else "{}") == {}
    prepare(b, [devs["tpu-2x2-0"]])  # the other NUMA half is free


def test_chip_leased_to_a_prepared_claim_is_refused_and_released_by_unprepare(v5e, tmp_path):
    b, devs = v5e
    result, ctx = prepare(b, [devs["tpu-1x2-0"]], uid="a")
    assert ctx.journal["leases"] == ["0000:00:04.0", "0000:00:05.0"]
    with pytest.raises(RuntimeError, match="TPU chip 0000:00:04.0 is held by prepared claim a"):
        prepare(b, [devs["tpu-2x2-0"]], uid="b")
    _open_chip(tmp_path / "h", 99, "python3", "/dev/vfio/0")  # the container of claim a
    prepare(b, [devs["tpu-1x2-0"]], uid="a")  # a retry of claim a is fine
    unprepare(b, "a", ctx, result)
    unprepare(b, "a", ctx, result)  # idempotent
    assert json.loads((tmp_path / "s/leases.json").read_text()) == {}
    (tmp_path / "h/proc/99/fd/7").unlink()
    prepare(b, [devs["tpu-2x2-0"]], uid="b")


def test_unprepare_after_a_crash_uses_the_journal(v5e, tmp_path):
    b, devs = v5e
    _, ctx = prepare(b, [devs["tpu-0000-00-04-0"]], uid="c")
    unprepare(b, "c", ctx, completed=False)
    assert json.loads((tmp_path / "s/leases.json").read_text()) == {}


def test_admin_access_neither_checks_nor_leases(v5e, tmp_path):
    b, devs = v5e
    _open_chip(tmp_path / "h", 4242, "python3", "/dev/vfio/0")
    result, ctx = prepare(b, [devs["tpu-0000-00-04-0"]], uid="adm", admin=True)
    assert ctx.journal == {} and result.claim_edits.env["TPU_VISIBLE_CHIPS"] == "0"


def _multi_host(tmp_path):
    env = {"ACCELERATOR_TYPE": "v6e-16", "TOPOLOGY": "4x4", "CHIPS_PER_HOST_BOUNDS": "2,2,1", "WORKER_ID": "1"}
    b = backend(build_host("tpu-v6e-4", tmp_path / "h", tpu_env=env), tmp_path / "s")
    return b, discover(b)["tpu-host"]


def test_multi_host_needs_a_tpu_config(tmp_path):
    from dra_backends.tpu.config import TpuConfig

    b, dev = _multi_host(tmp_path)
    with pytest.raises(ValueError, match="one host of a 4-host slice: the claim needs a TpuConfig"):
        prepare(b, [dev])
    cfg = TpuConfig.model_validate({"workerId": 1, "workerHostnames": ["w-0", "w-1", "10.0.0.3", "w-3.tpu.local"]})
    env = prepare(b, [dev], uid="m", configs=(cfg,))[0].claim_edits.env
    assert env["TPU_WORKER_ID"] == "1" and env["TPU_WORKER_HOSTNAMES"] == "w-0,w-1,10.0.0.3,w-3.tpu.local"
    assert env["TPU_PROCESS_BOUNDS"] == "2,2,1" and env["TPU_TOPOLOGY"] == "4x4" and env["TPU_ACCELERATOR_TYPE"] == "v6e-16"
    assert "TPU_PROCESS_ADDRESSES" not in env


@pytest.mark.parametrize("params, field", [
    ({"workerId": 4, "workerHostnames": ["a", "b", "c", "d"]}, "workerId"),
    ({"workerId": -1, "workerHostnames": ["a"]}, "workerId"),
    ({"workerId": 0, "workerHostnames": ["Bad_Name"]}, "workerHostnames[0]"),
    ({"workerId": 0, "workerHostnames": ["a", "a"]}, "workerHostnames"),
    ({"workerId": 0, "workerHostnames": []}, "workerHostnames"),
    ({"workerId": 0, "workerHostnames": ["a"], "workerIds": 1}, "workerIds"),
])
def test_tpu_config_is_validated_strictly(params, field):
    from dra_backends.tpu.config import TpuConfig

    with pytest.raises(pydantic.ValidationError) as e:
        TpuConfig.model_validate(params)
    assert field in str(e.value)


def test_tpu_config_worker_count_must_match_the_slice(tmp_path):
    from dra_backends.tpu.config import TpuConfig
    from dra_framework.api import AllocatedDevice

    b, dev = _multi_host(tmp_path)
    cfg = TpuConfig.model_validate({"workerId": 0, "workerHostnames": ["a", "b"]})
    with pytest.raises(ValueError, match="workerHostnames: device 'tpu-host' is one host of a 4-host slice"):
        b.dra_validate_config(cfg, AllocatedDevice(request="r", pool="p", device=dev))
    single = backend(build_host("tpu-v6e-4", tmp_path / "h2"), tmp_path / "s2")
    chip = discover(single)["tpu-host"]
    assert single.dra_validate_config(cfg, AllocatedDevice(request="r", pool="p", device=chip)) is False

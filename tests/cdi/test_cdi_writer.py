"""CdiWriter: atomic writes, removal, reconcile helpers (issue 5, item 5) and assert_valid_cdi_dir."""
import json
import os
import stat
import uuid

import pytest

from dra_framework.cdi import CdiValidationError, CdiWriter, ContainerEdits, DeviceNode, Mount
from dra_framework.cdi.testing import assert_valid_cdi_dir
from dra_framework.cdi.writer import INERT_ENV_NAME

VENDOR, CLASS = "k8s.gpu.example.com", "gpu"
UID = "0b5e9a2c-1d2e-4f00-8a9b-0123456789ab"
GPU = ContainerEdits(env={"GPU": "0"}, device_nodes=[DeviceNode(path="/dev/gpu0", type="c", major=195, minor=0)])


@pytest.fixture
def writer(tmp_path):
    return CdiWriter(str(tmp_path / "cdi"), vendor=VENDOR, class_=CLASS)


def test_write_claim_spec(writer):
    ids = writer.write_claim_spec(UID, [("gpu-0", None, GPU), ("gpu-1", "s1", GPU)],
                                  claim_edits=ContainerEdits(env={"CLAIM": UID}))
    assert ids == [f"{VENDOR}/{CLASS}={UID}-gpu-0", f"{VENDOR}/{CLASS}={UID}-gpu-1.s1"]
    path = writer.claim_spec_path(UID)
    assert os.path.basename(path) == f"{VENDOR}-{CLASS}_{UID}.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    spec = json.load(open(path))
    assert spec["cdiVersion"] == "0.5.0"  # name starts with a digit (docs/cdi-rules.md#versions)
    assert spec["containerEdits"] == {"env": [f"CLAIM={UID}"]}
    assert writer.read_claim_spec_ids(UID) == ids
    assert writer.list_claim_spec_uids() == [UID]
    assert_valid_cdi_dir(writer.cdi_root)


def test_version_is_minimum(writer):
    uid = "abc"  # non-UUID uid: name "abc.gpu" does not start with a digit
    writer.write_claim_spec(uid, [("gpu", None, ContainerEdits(env={"A": "1"}))])
    assert json.load(open(writer.claim_spec_path(uid)))["cdiVersion"] == "0.3.0"


def test_atomic_write_no_partial_json_visible(writer, monkeypatch):
    seen = {}
    real_replace = os.replace

    def spy(src, dst):
        d = os.path.dirname(dst)
        names = os.listdir(d)
        seen["names"] = names
        seen["src"] = os.path.basename(src)
        seen["mode"] = stat.S_IMODE(os.stat(src).st_mode)
        seen["content"] = open(src).read()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    writer.write_claim_spec(UID, [("gpu-0", None, GPU)])
    # Before the rename: no spec file of ours, only the temp file, which runtimes skip
    # (leading dot, extension not .json/.yaml; docs/cdi-rules.md#directories).
    assert seen["names"] == [seen["src"]]
    tmp = seen["src"]
    assert tmp.startswith(".") and tmp.endswith(".tmp")
    assert not tmp.endswith((".json", ".yaml"))
    assert seen["mode"] == 0o644
    json.loads(seen["content"])  # complete before the rename
    assert sorted(os.listdir(writer.cdi_root)) == [f"{VENDOR}-{CLASS}_{UID}.json"]


def test_failed_rename_leaves_nothing(writer, monkeypatch):
    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        writer.write_claim_spec(UID, [("gpu-0", None, GPU)])
    assert os.listdir(writer.cdi_root) == []


def test_overwrite_keeps_old_until_rename(writer, monkeypatch):
    writer.write_claim_spec(UID, [("gpu-0", None, GPU)])
    old = open(writer.claim_spec_path(UID)).read()
    real_replace = os.replace

    def spy(src, dst):
        assert open(dst).read() == old
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    writer.write_claim_spec(UID, [("gpu-1", None, GPU)])
    assert writer.read_claim_spec_ids(UID) == [f"{VENDOR}/{CLASS}={UID}-gpu-1"]


def test_invalid_spec_is_never_written(writer):
    bad = ContainerEdits(device_nodes=[DeviceNode(path="dev/gpu0")])
    with pytest.raises(CdiValidationError, match=r'devices\[0\] "' + UID + r'-gpu-0": containerEdits.deviceNodes\[0\].path'):
        writer.write_claim_spec(UID, [("gpu-0", None, bad)])
    with pytest.raises(CdiValidationError, match="duplicate device name"):
        writer.write_claim_spec(UID, [("gpu-0", None, GPU), ("gpu-0", None, GPU)])
    with pytest.raises(ValueError):
        writer.write_claim_spec(UID, [])
    assert not os.path.exists(writer.cdi_root) or os.listdir(writer.cdi_root) == []


def test_max_version_cap(tmp_path):
    w = CdiWriter(str(tmp_path), vendor=VENDOR, class_=CLASS, max_cdi_version="0.6.0")
    with pytest.raises(CdiValidationError, match="0.7.0"):
        w.write_claim_spec(UID, [("gpu-0", None, ContainerEdits(additional_gids=[44]))])
    assert os.listdir(tmp_path) == []


def test_empty_device_edits_get_inert_env(writer):
    writer.write_claim_spec(UID, [("gpu-0", None, ContainerEdits())], ContainerEdits(env={"X": "1"}))
    spec = json.load(open(writer.claim_spec_path(UID)))
    assert spec["devices"][0]["containerEdits"] == {"env": [f"{INERT_ENV_NAME}={UID}-gpu-0"]}


def test_remove_and_reconcile(writer):
    uids = sorted(str(uuid.uuid4()) for _ in range(3))
    for u in uids:
        writer.write_claim_spec(u, [("gpu-0", None, GPU)])
    writer.write_common_spec(ContainerEdits(env={"NODE": "n1"}))
    # A foreign spec whose name has our prefix but another kind is not ours.
    other = os.path.join(writer.cdi_root, f"{VENDOR}-{CLASS}_foreign.json")
    with open(other, "w") as f:
        json.dump({"cdiVersion": "0.3.0", "kind": "k8s.gpu.example.com-gpu/x",
                   "devices": [{"name": "a", "containerEdits": {"env": ["A=1"]}}]}, f)
    with open(os.path.join(writer.cdi_root, f".{VENDOR}-{CLASS}_x.json.123.tmp"), "w") as f:
        f.write("{")  # what a write killed half-way leaves (unlocked, not empty)
    assert writer.list_claim_spec_uids() == uids
    assert writer.remove_claim_spec(uids[0]) is True
    assert writer.remove_claim_spec(uids[0]) is False  # missing is not an error
    assert writer.read_claim_spec_ids(uids[0]) is None
    assert writer.list_claim_spec_uids() == uids[1:]
    assert len(writer.remove_stale_temp_files()) == 1
    assert os.path.exists(writer.common_spec_path)
    assert writer.remove_common_spec() and not writer.remove_common_spec()


def test_list_uids_missing_root(tmp_path):
    assert CdiWriter(str(tmp_path / "nope"), vendor=VENDOR, class_=CLASS).list_claim_spec_uids() == []


def test_exists_and_matches_and_ensure(writer, monkeypatch):
    devs = [("gpu-0", None, GPU)]
    assert not writer.claim_spec_exists_and_matches(UID, devs)
    ids = writer.ensure_claim_spec(UID, devs)
    assert writer.claim_spec_exists_and_matches(UID, devs)
    assert not writer.claim_spec_exists_and_matches(UID, [("gpu-1", None, GPU)])
    assert not writer.claim_spec_exists_and_matches(UID, devs, ContainerEdits(env={"A": "1"}))
    calls = []
    monkeypatch.setattr(os, "replace", lambda *a: calls.append(a))
    assert writer.ensure_claim_spec(UID, devs) == ids and calls == []  # already fine: no rewrite
    monkeypatch.undo()
    os.chmod(writer.claim_spec_path(UID), 0o600)
    assert not writer.claim_spec_exists_and_matches(UID, devs)
    with open(writer.claim_spec_path(UID), "w") as f:
        f.write("{trunc")
    os.chmod(writer.claim_spec_path(UID), 0o644)
    assert not writer.claim_spec_exists_and_matches(UID, devs)
    assert writer.ensure_claim_spec(UID, devs) == ids
    assert writer.claim_spec_exists_and_matches(UID, devs)


def test_common_spec(writer):
    qid = writer.write_common_spec(ContainerEdits(env={"NODE": "n1"}))
    assert qid == f"{VENDOR}/{CLASS}=common"
    assert os.path.basename(writer.common_spec_path) == f"{VENDOR}-{CLASS}_common.json"
    with pytest.raises(ValueError):
        writer.write_common_spec(ContainerEdits())
    assert writer.list_claim_spec_uids() == []
    assert_valid_cdi_dir(writer.cdi_root)


@pytest.mark.parametrize("vendor,class_", [("v", "gpu"), ("Example.com", "gpu"), ("example.com", "g.pu"),
                                           ("example.com", "g")])
def test_writer_rejects_bad_kind(tmp_path, vendor, class_):
    with pytest.raises(CdiValidationError):
        CdiWriter(str(tmp_path), vendor=vendor, class_=class_)


def test_host_root_applied_on_write(tmp_path):
    w = CdiWriter(str(tmp_path), vendor=VENDOR, class_=CLASS, host_root_map={"/driver-root": "/"})
    e = ContainerEdits(device_nodes=[DeviceNode(path="/dev/nvidia0", host_path="/driver-root/dev/nvidia0")],
                       mounts=[Mount(host_path="/driver-root/usr/lib/libx.so", container_path="/usr/lib/libx.so",
                                     options=["ro", "bind"])])
    w.write_claim_spec("abc", [("gpu", None, e)])
    spec = json.load(open(w.claim_spec_path("abc")))
    ce = spec["devices"][0]["containerEdits"]
    assert ce["deviceNodes"] == [{"path": "/dev/nvidia0"}]  # hostPath == path is dropped
    assert ce["mounts"][0]["hostPath"] == "/usr/lib/libx.so"
    assert spec["cdiVersion"] == "0.3.0"


def test_assert_valid_cdi_dir_catches_problems(tmp_path, writer):
    writer.write_claim_spec(UID, [("gpu-0", None, GPU)])
    root = writer.cdi_root
    # The same qualified device in a second file (runtimes drop it, docs/cdi-rules.md#directories).
    with open(os.path.join(root, "copy.json"), "w") as f:
        f.write(open(writer.claim_spec_path(UID)).read())
    os.chmod(os.path.join(root, "copy.json"), 0o644)
    with pytest.raises(AssertionError, match="also defined in"):
        assert_valid_cdi_dir(root)
    os.unlink(os.path.join(root, "copy.json"))
    with open(os.path.join(root, "bad.json"), "w") as f:
        json.dump({"cdiVersion": "0.3.0", "kind": "vendor.com/device", "devices": []}, f)
    os.chmod(os.path.join(root, "bad.json"), 0o600)
    with pytest.raises(AssertionError) as ei:
        assert_valid_cdi_dir(root)
    assert "mode 0600" in str(ei.value) and "at least one device" in str(ei.value)
    os.unlink(os.path.join(root, "bad.json"))
    open(os.path.join(root, "notes.txt"), "w").close()  # ignored, as runtimes do
    assert list(assert_valid_cdi_dir(root)) == [os.path.basename(writer.claim_spec_path(UID))]
    assert assert_valid_cdi_dir(tmp_path / "missing") == {}
    with pytest.raises(AssertionError):
        assert_valid_cdi_dir(tmp_path / "missing", allow_empty=False)


def test_another_kinds_file_with_our_name_is_never_overwritten_nor_removed(tmp_path):
    # k8s.a/b-cd and k8s.a-b/cd both name their claim files k8s.a-b-cd_<uid>.json.
    mine = CdiWriter(str(tmp_path), vendor="k8s.a", class_="b-cd")
    theirs = CdiWriter(str(tmp_path), vendor="k8s.a-b", class_="cd")
    theirs.write_claim_spec(UID, [("gpu-0", None, GPU)])
    before = (tmp_path / f"k8s.a-b-cd_{UID}.json").read_bytes()
    with pytest.raises(CdiValidationError, match="holds CDI kind k8s.a-b/cd, not k8s.a/b-cd"):
        mine.write_claim_spec(UID, [("gpu-1", None, GPU)])
    assert mine.list_claim_spec_uids() == []  # start-up sweep: not ours
    assert mine.remove_claim_spec(UID) is False
    assert (tmp_path / f"k8s.a-b-cd_{UID}.json").read_bytes() == before
    theirs.write_common_spec(GPU)
    with pytest.raises(CdiValidationError, match="another driver"):
        mine.write_common_spec(GPU)
    assert mine.remove_common_spec() is False and os.path.exists(theirs.common_spec_path)

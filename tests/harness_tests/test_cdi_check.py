"""cdi-check: the CDI reference library, loading specs like a container runtime."""
import json

import pytest

pytestmark = pytest.mark.k8s

SPEC = {
    "cdiVersion": "0.6.0", "kind": "harness.example.com/gpu",
    "devices": [{"name": "gpu0", "containerEdits": {"env": ["GPU_INDEX=0"], "deviceNodes": [{"path": "/dev/null"}]}}],
    "containerEdits": {"env": ["HARNESS_DRIVER=1"]},
}


def test_resolves_valid_spec(tmp_path, cdi_check):
    (tmp_path / "harness.json").write_text(json.dumps(SPEC))
    out = cdi_check(tmp_path, ["harness.example.com/gpu=gpu0"])
    assert out["devices"] == {"harness.example.com/gpu=gpu0": str(tmp_path / "harness.json")}
    assert set(out["edits"]["env"]) == {"GPU_INDEX=0", "HARNESS_DRIVER=1"}
    assert [d["path"] for d in out["edits"]["deviceNodes"]] == ["/dev/null"]


def test_unknown_id_fails(tmp_path, cdi_check):
    (tmp_path / "harness.json").write_text(json.dumps(SPEC))
    with pytest.raises(AssertionError, match="unresolvable CDI device.*harness.example.com/gpu=gpu9"):
        cdi_check(tmp_path, ["harness.example.com/gpu=gpu9"])


def test_invalid_spec_fails(tmp_path, cdi_check):
    (tmp_path / "harness.json").write_text(json.dumps(SPEC))
    bad = dict(SPEC, kind="not a valid kind")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(AssertionError, match=r"(?s)invalid CDI spec.*bad.json"):
        cdi_check(tmp_path, ["harness.example.com/gpu=gpu0"])

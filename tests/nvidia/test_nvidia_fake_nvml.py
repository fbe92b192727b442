"""The fake NVML behaves like real MIG hardware where the backend depends on it."""
from __future__ import annotations

import json

import pytest

from dra_backends.nvidia import nvml_api as api
from dra_backends.nvidia.fake import FakeNvml, PRESETS
from dra_backends.nvidia.nvml_api import NvmlError


def _fake(preset="dgx-h100", mig=True, **kw) -> tuple[FakeNvml, str]:
    spec = json.loads(json.dumps(PRESETS[preset]))
    for g in spec["gpus"]:
        g["migEnabled"] = mig
    f = FakeNvml(spec, **kw)
    f.init()
    return f, spec["gpus"][0]["uuid"]


def test_overlapping_placement_rejected():
    f, u = _fake()
    gi = f.create_gpu_instance(u, 9, 0)  # 3g.40gb on slices 0-3
    assert gi.id == 1 and (gi.start, gi.size) == (0, 4)
    with pytest.raises(NvmlError) as e:
        f.create_gpu_instance(u, 19, 2)  # 1g.10gb on slice 2
    assert e.value.code == api.ERROR_INSUFFICIENT_RESOURCES
    with pytest.raises(NvmlError) as e:
        f.create_gpu_instance(u, 0, 0)  # 7g.80gb
    assert e.value.code == api.ERROR_INSUFFICIENT_RESOURCES
    assert f.create_gpu_instance(u, 19, 4).id == 11  # real GI id of 1-slice placement 4


def test_instance_count_and_compute_slices_limit():
    f, u = _fake()
    f.create_gpu_instance(u, 20, 0)  # 1g.10gb+me: only one per GPU
    with pytest.raises(NvmlError) as e:
        f.create_gpu_instance(u, 20, 1)
    assert e.value.code == api.ERROR_INSUFFICIENT_RESOURCES
    f2, u2 = _fake()
    f2.create_gpu_instance(u2, 5, 0)   # 4g (4 compute slices)
    f2.create_gpu_instance(u2, 9, 4)   # 3g (3) → 7 in all
    assert [g.id for g in f2.gpu_instances(u2)] == [1, 2]


def test_invalid_placement_and_profile():
    f, u = _fake()
    for pid, start in ((14, 6), (9, 2), (99, 0)):  # 2g has no placement 6; 3g none at 2; no profile 99
        with pytest.raises(NvmlError) as e:
            f.create_gpu_instance(u, pid, start)
        assert e.value.code == api.ERROR_INVALID_ARGUMENT


def test_mig_disabled_and_ampere_toggle():
    f, u = _fake(mig=False)
    with pytest.raises(NvmlError) as e:
        f.create_gpu_instance(u, 19, 0)
    assert e.value.code == api.ERROR_NOT_SUPPORTED
    f.set_mig_mode(u, True)  # Hopper: live
    assert f.system().gpus[0].mig_enabled
    a, ua = _fake("dgx-a100", mig=False)
    a.set_mig_mode(ua, True)  # Ampere: pending until reset
    g = a.system().gpus[0]
    assert (g.mig_enabled, g.mig_pending) == (False, True)
    a.reset_gpu(ua)
    assert a.system().gpus[0].mig_enabled


def test_destroy_order_in_use_and_uuid_changes():
    f, u = _fake()
    gi = f.create_gpu_instance(u, 19, 0)
    ci = f.create_compute_instance(u, gi.id)
    first = f.mig_devices(u)[0].uuid
    with pytest.raises(NvmlError) as e:
        f.destroy_gpu_instance(u, gi.id)  # a CI still exists
    assert e.value.code == api.ERROR_IN_USE
    f.attach_process(u, gi.id)
    with pytest.raises(NvmlError) as e:
        f.destroy_compute_instance(u, gi.id, ci.id)
    assert e.value.code == api.ERROR_IN_USE
    f.detach_process(u, gi.id)
    f.destroy_compute_instance(u, gi.id, ci.id)
    f.destroy_gpu_instance(u, gi.id)
    with pytest.raises(NvmlError) as e:
        f.destroy_gpu_instance(u, gi.id)
    assert e.value.code == api.ERROR_NOT_FOUND
    gi = f.create_gpu_instance(u, 19, 0)
    f.create_compute_instance(u, gi.id)
    assert f.mig_devices(u)[0].uuid != first


def test_state_persists_and_faults(tmp_path):
    f, u = _fake(state_path=tmp_path / "s.json")
    f.create_gpu_instance(u, 14, 2)
    g, _ = _fake(state_path=tmp_path / "s.json")
    assert [(x.profile_id, x.start) for x in g.gpu_instances(u)] == [(14, 2)]
    g.fail_next("create_gpu_instance", api.ERROR_UNKNOWN)
    with pytest.raises(NvmlError):
        g.create_gpu_instance(u, 19, 0)
    g.create_gpu_instance(u, 19, 0)


def test_events_api_and_inject_dir(tmp_path):
    f, u = _fake(inject_dir=tmp_path / "inject")
    es = f.event_set()
    f.register_events(es, u, api.HEALTH_EVENT_MASK)
    assert f.wait_event(es, 10) is None
    f.inject_xid(u, 79)
    ev = f.wait_event(es, 10)
    assert (ev.kind, ev.uuid, ev.data, ev.gi_id) == ("xid", u, 79, api.NO_INSTANCE)
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject/1.json").write_text(json.dumps({"kind": "xid", "uuid": u, "xid": 48, "gi": 7, "ci": 0}))
    ev = f.wait_event(es, 10)
    assert (ev.data, ev.gi_id, ev.ci_id) == (48, 7, 0)
    other = PRESETS["dgx-h100"]["gpus"][1]["uuid"]
    f.inject_xid(other, 79)  # not registered on this set: not delivered
    assert f.wait_event(es, 10) is None
    f.lose_gpu(u)
    assert f.wait_event(es, 10).kind == "gpu-lost"
    with pytest.raises(NvmlError) as e:
        f.gpu_instances(u)
    assert e.value.code == api.ERROR_GPU_IS_LOST

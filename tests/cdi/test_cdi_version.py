"""Minimum required cdiVersion (issue 5, item 3; docs/cdi-rules.md#minimum-version)."""
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dra_framework.cdi import CdiValidationError, check_version, minimum_version
from dra_framework.cdi.version import KNOWN_VERSIONS, version_key


def base():
    return {"kind": "vendor.com/device", "devices": [{"name": "dev", "containerEdits": {"env": ["A=1"]}}]}


def dev_edits(s):
    return s["devices"][0]["containerEdits"]


def top_edits(s):
    return s.setdefault("containerEdits", {})


# Each feature: (version it needs, mutation). Mutations target device- or spec-level edits.
FEATURES = {
    "mount_type_dev": ("0.4.0", lambda s: dev_edits(s).setdefault("mounts", []).append(
        {"hostPath": "/a", "containerPath": "/b", "type": "bind"})),
    "mount_type_top": ("0.4.0", lambda s: top_edits(s).setdefault("mounts", []).append(
        {"hostPath": "/a", "containerPath": "/b", "type": "tmpfs"})),
    "host_path": ("0.5.0", lambda s: dev_edits(s).setdefault("deviceNodes", []).append(
        {"path": "/dev/x", "hostPath": "/dev/x"})),
    "host_path_top": ("0.5.0", lambda s: top_edits(s).setdefault("deviceNodes", []).append(
        {"path": "/dev/x", "hostPath": "/dev/y"})),
    "digit_name": ("0.5.0", lambda s: s["devices"].append({"name": "0dev", "containerEdits": {"env": ["B=1"]}})),
    "spec_annotations": ("0.6.0", lambda s: s.__setitem__("annotations", {"a": "b"})),
    "device_annotations": ("0.6.0", lambda s: s["devices"][0].__setitem__("annotations", {"a": "b"})),
    "dotted_class": ("0.6.0", lambda s: s.__setitem__("kind", s["kind"] + ".sub")),
    "intel_rdt": ("0.7.0", lambda s: dev_edits(s).setdefault("intelRdt", {}).update({"closID": "c"})),
    "gids": ("0.7.0", lambda s: top_edits(s).setdefault("additionalGids", []).append(5)),
    "net_devices": ("1.1.0", lambda s: dev_edits(s).setdefault("netDevices", []).append(
        {"hostInterfaceName": "eth0", "name": "n0"})),
    "schemata_empty": ("1.1.0", lambda s: top_edits(s).setdefault("intelRdt", {}).update({"schemata": []})),
    "enable_monitoring": ("1.1.0", lambda s: dev_edits(s).setdefault("intelRdt", {}).update({"enableMonitoring": True})),
}


def test_no_new_features_gets_oldest():
    assert minimum_version(base()) == "0.3.0"
    s = base()
    # Things that look like features but are not: empty type/hostPath/annotations/gids/netDevices.
    dev_edits(s).update({"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": ""}],
                         "deviceNodes": [{"path": "/dev/x", "hostPath": ""}], "additionalGids": [],
                         "netDevices": []})
    s["annotations"] = {}
    top_edits(s)["intelRdt"] = None
    assert minimum_version(s) == "0.3.0"
    rdt = base()
    dev_edits(rdt)["intelRdt"] = {"enableMonitoring": False}
    assert minimum_version(rdt) == "0.7.0"


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_each_feature(feature):
    need, mutate = FEATURES[feature]
    s = base()
    mutate(s)
    assert minimum_version(s) == need
    assert version_key(need) in {version_key(v) for v in KNOWN_VERSIONS}


@given(st.lists(st.sampled_from(sorted(FEATURES)), unique=True), st.sampled_from(sorted(FEATURES)))
@settings(max_examples=300)
def test_adding_a_feature_never_lowers(features, extra):
    s = base()
    for f in features:
        FEATURES[f][1](s)
    before = minimum_version(s)
    expected = max([FEATURES[f][0] for f in features] + ["0.3.0"], key=version_key)
    assert before == expected
    s2 = copy.deepcopy(s)
    FEATURES[extra][1](s2)
    after = minimum_version(s2)
    assert version_key(after) >= version_key(before)
    assert version_key(after) >= version_key(FEATURES[extra][0])


def test_check_version():
    s = base()
    for v in ["0.3.0", "v0.3.0", "1.1.0", "0.8.0"]:
        s["cdiVersion"] = v
        assert check_version(s) == v.lstrip("v")
    for v in ["0.1.0", "0.2.0", "1.2.0", "1.1", "not-a-version", "0.0.0"]:
        s["cdiVersion"] = v
        with pytest.raises(CdiValidationError, match="cdiVersion"):
            check_version(s)
    FEATURES["host_path"][1](s)
    s["cdiVersion"] = "0.4.0"
    with pytest.raises(CdiValidationError, match="at least v0.5.0"):
        check_version(s)

"""Where the 1.34 allocator differs from 1.35+, one small case per kind of difference: explain
follows the allocator of the harness's Kubernetes version (the oracle) and the other version's
model gives the other verdict. Run at both: ``DRA_HARNESS_K8S_VERSION=1.34.4 pytest tests/explain``."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from dra_framework.explain.core import Explainer
from dra_framework.explain.inputs import Inputs
from dra_framework.testing.k8s import allocate_batch

pytestmark = pytest.mark.k8s
API = "resource.k8s.io/v1"


def _slice(*names: str, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ResourceSlice", "metadata": {"name": "s"},
            "spec": {"driver": "d.example.com", "nodeName": "node-1",
                     "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": n, "attributes": attrs or {}} for n in names]}}


CLASS = {"apiVersion": API, "kind": "DeviceClass", "metadata": {"name": "c"},
         "spec": {"selectors": [{"cel": {"expression": 'device.driver == "d.example.com"'}}]}}


def _claim(requests: list[dict[str, Any]], constraints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ResourceClaim", "metadata": {"name": "x", "namespace": "default"},
            "spec": {"devices": {"requests": requests, "constraints": constraints or []}}}


# (name, slices, claim, satisfiable at 1.34, satisfiable at 1.35+)
CASES = [
    # 1.34 compared distinctAttribute values by pointer: two devices with equal values pass
    ("distinct-attribute-equal-values", [_slice("a", "b", attrs={"model": {"string": "x"}})],
     _claim([{"name": "r", "exactly": {"deviceClassName": "c", "count": 2}}],
            [{"distinctAttribute": "d.example.com/model"}]), True, False),
    # 1.34 went on with subrequest 0 after the first device of an allocationMode All subrequest
    ("all-in-a-later-subrequest", [_slice("a", "b")],
     _claim([{"name": "r", "firstAvailable": [{"name": "s0", "deviceClassName": "c", "count": 3},
                                              {"name": "s1", "deviceClassName": "c", "allocationMode": "All"}]}]),
     False, True),
]


def _explain(slices: list[dict[str, Any]], claim: dict[str, Any], legacy: bool) -> dict[str, Any]:
    inputs = Inputs()
    for obj in copy.deepcopy(slices + [CLASS, claim]):
        inputs.add(obj, "test")
    return Explainer(inputs, legacy).explain("node-1")["claims"][0]


@pytest.mark.parametrize("name,slices,claim,at_134,at_135", CASES, ids=[c[0] for c in CASES])
def test_explain_follows_the_allocator_of_each_version(harness_bins, k8s_version, name, slices, claim,
                                                       at_134, at_135):
    legacy = k8s_version.startswith("1.34.")
    (oracle,) = allocate_batch(harness_bins, [{"name": name, "nodeName": "node-1", "slices": slices,
                                               "classes": [CLASS], "claims": [], "cases": [{"name": name,
                                                                                             "claim": claim}]}])
    assert oracle["allocated"] is (at_134 if legacy else at_135), oracle
    mine = _explain(slices, claim, legacy)
    assert mine["satisfiable"] is oracle["allocated"] and mine["error"] is None
    if oracle["allocated"]:
        assert mine["allocation"]["devices"]["results"] == [
            {k: r[k] for k in ("request", "driver", "pool", "device")} for r in oracle["allocation"]["devices"]["results"]]
    assert _explain(slices, claim, not legacy)["satisfiable"] is (at_135 if legacy else at_134)

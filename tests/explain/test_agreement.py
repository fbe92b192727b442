"""``explain`` agrees with the scheduler's allocator (the harness's ``dra-allocator --batch``,
k8s.io/dynamic-resource-allocation/structured of the harness's Kubernetes version) on a seeded
corpus of 500+ claims over the sample hosts' slices: satisfiable exactly when the allocator
allocates, an error exactly when it reports one, the same devices as the allocator's own first
choice, and the allocation explain proposes passes the allocator's check (tests/explain/oracle.py:
with every other device taken, it allocates exactly those).

Run at both versions: ``DRA_HARNESS_K8S_VERSION=1.34.4 pytest tests/explain/test_agreement.py``.
The figure is printed (``-s``) and recorded as the test property ``agreement``.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from dra_framework.explain.core import Explainer
from dra_framework.explain.inputs import Inputs
from dra_framework.testing.k8s import allocate_batch

from .corpus import named, scenarios
from .oracle import check_verdict, keys, pinned_scenario

pytestmark = pytest.mark.k8s


def _explain_case(ex: Explainer, claim: dict[str, Any]) -> dict[str, Any]:
    ex.inputs.claims = [c for c in ex.inputs.claims if (c.get("status") or {}).get("allocation")]
    ex.inputs.add(copy.deepcopy(claim), "corpus")
    target = ex.inputs.targets()[0]
    return ex.explain("node-1")["claims"][0] | {"claim_obj": target.claim}


def disagreement(mine: dict[str, Any], oracle: dict[str, Any], check: dict[str, Any] | None, exact: bool) -> str:
    """'' when explain and the allocator agree; ``check``: the allocator's run on the pinned scenario."""
    if oracle["allocated"] != mine["satisfiable"]:
        return f"allocator allocated={oracle['allocated']} ({oracle.get('error', '')}), explain {mine['satisfiable']}"
    if bool(oracle.get("error")) != bool(mine["error"]):
        return f"allocator error {oracle.get('error')!r}, explain error {mine['error']!r}"
    if oracle["allocated"]:
        if check is not None and (why := check_verdict(check, mine["allocation"])):
            return why
        if exact and keys(oracle["allocation"]) != keys(mine["allocation"]):
            return f"allocator chose {keys(oracle['allocation'])}, explain {keys(mine['allocation'])}"
    return ""


@pytest.fixture(scope="module")
def corpus(k8s_version: str) -> list[dict[str, Any]]:
    return scenarios(".".join(k8s_version.split(".")[:2]))


def test_explain_agrees_with_the_allocator(corpus, harness_bins, k8s_version, record_property):
    legacy = k8s_version.startswith("1.34.")
    mine: dict[tuple[str, str], dict[str, Any]] = {}
    batch, checks = [], []
    for sc in corpus:
        inputs = Inputs()
        for obj in sc["slices"] + sc["classes"] + sc["claims"]:
            inputs.add(copy.deepcopy(obj), sc["name"])  # slices as discover writes them (generateName)
        ex = Explainer(inputs, legacy)
        named_sc = {**sc, "slices": named(sc["slices"])}
        for case in sc["cases"]:
            m = _explain_case(ex, case["claim"])
            mine[(sc["name"], case["name"])] = m
            if m["allocation"]:
                checks.append(pinned_scenario(named_sc, case, m["allocation"]))
        batch.append(named_sc)
    out = allocate_batch(harness_bins, batch + checks)
    oracle, checked = out[:len(mine)], {(o["scenario"].split(" check ")[0], o["case"]): o for o in out[len(mine):]}
    assert len(oracle) == len(mine) and len(checked) == len(checks)
    bad = {}
    for o in oracle:
        key = (o["scenario"], o["case"])
        why = disagreement(mine[key], o, checked.get(key), exact=True)
        if why:
            bad[f"{o['scenario']} {o['case']}"] = why
    n = len(oracle)
    allocated = sum(o["allocated"] for o in oracle)
    errors = sum(bool(o.get("error")) for o in oracle)
    figure = (f"{n - len(bad)}/{n} agree at Kubernetes {k8s_version} ({allocated} allocatable, {errors} allocator errors, "
              f"{len(checks)} proposals checked)")
    print(f"\nexplain vs allocator: {figure}")
    record_property("agreement", figure)
    assert n >= 500
    assert allocated >= n // 5 and n - allocated - errors >= n // 5, f"corpus too one-sided: {figure}"
    listing = f"{figure}; disagreements:\n" + "\n".join(f"{k}: {v}" for k, v in list(bad.items())[:20])
    assert not bad, listing


def test_the_oracle_rejects_a_wrong_proposal(harness_bins, k8s_version):
    """The check can fail: a device the selector does not match, or one device too few; and it
    passes a right proposal whose devices share counters with the devices it pins."""
    counters = {"sharedCounters": [{"name": "cs", "counters": {"mem": {"value": "2"}}}]}
    devices = {"devices": [{"name": f"dev-{i}", "attributes": {"i": {"int": i}},
                            "consumesCounters": [{"counterSet": "cs", "counters": {"mem": {"value": "1"}}}]}
                           for i in range(3)]}
    # 1.34: the counter set is in the slice of its devices; 1.35+: a slice of its own
    parts = [counters | devices] if k8s_version.startswith("1.34.") else [counters, devices]
    slices = [{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"s{i}"},
               "spec": {"driver": "d.example.com", "nodeName": "node-1",
                        "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": len(parts)}, **part}}
              for i, part in enumerate(parts)]
    cls = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "c"},
           "spec": {"selectors": [{"cel": {"expression": 'device.driver == "d.example.com"'}}]}}
    claim = {"metadata": {"name": "x", "namespace": "default"}, "spec": {"devices": {"requests": [
        {"name": "r", "exactly": {"deviceClassName": "c", "count": 2, "selectors": [
            {"cel": {"expression": 'device.attributes["d.example.com"].i > 0'}}]}}]}}}

    def prop(*devs: str) -> dict[str, Any]:
        return {"devices": {"results": [{"request": "r", "driver": "d.example.com", "pool": "node-1", "device": d}
                                        for d in devs]}}
    sc = {"name": "s", "nodeName": "node-1", "slices": slices, "classes": [cls], "claims": []}
    proposals = [prop("dev-1", "dev-2"), prop("dev-0", "dev-2"), prop("dev-1")]
    out = allocate_batch(harness_bins, [pinned_scenario(sc, {"name": f"p{i}", "claim": claim}, p)
                                        for i, p in enumerate(proposals)])
    verdicts = [check_verdict(o, p) for o, p in zip(out, proposals, strict=True)]
    assert verdicts[0] == "" and all("proposal rejected" in v for v in verdicts[1:]), verdicts
    oracle = {"allocated": True, "allocation": proposals[0]}
    mine = {"satisfiable": True, "error": None, "allocation": proposals[1]}
    assert "proposal rejected" in disagreement(mine, oracle, out[1], exact=False)

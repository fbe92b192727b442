"""The proposal check of the agreement test, with the scheduler's allocator as the judge.

A proposed allocation passes when the allocator, run on the same slices with every device
that is not in the proposal taken by one more allocated claim, allocates exactly the proposed
devices (same requests, same consumed capacity). The slices keep every device in its place: the
1.34 allocator reads a device by its index in the slice and crashes on shortened slices. The
devices the extra claim takes lose their counter consumption, so that taking them does not use
up the counters the proposed devices need.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from lightkube.utils.quantity import parse_quantity

PIN = "explain-proposal-check"


def keys(alloc: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    """(request, driver, pool, device, consumed capacity by value): 1.34 writes 5G where explain
    writes 5000000000."""
    return sorted((r["request"], r["driver"], r["pool"], r["device"],
                   json.dumps({k: str(parse_quantity(str(v)).normalize())
                               for k, v in (r.get("consumedCapacity") or {}).items()}, sort_keys=True))
                  for r in ((alloc or {}).get("devices") or {}).get("results") or [])


def _held(claims: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(r["driver"], r["pool"], r["device"]) for c in claims
            for r in (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []}


def pinned_scenario(sc: dict[str, Any], case: dict[str, Any], proposal: dict[str, Any]) -> dict[str, Any]:
    """A scenario whose only free devices are the proposed ones, for ``allocate_batch``."""
    keep = {(r["driver"], r["pool"], r["device"]) for r in proposal["devices"]["results"]}
    held = _held(sc["claims"])
    slices = copy.deepcopy(sc["slices"])
    taken = []
    for s in slices:
        spec = s["spec"]
        for d in spec.get("devices") or []:
            dev_id = (spec["driver"], spec["pool"]["name"], d["name"])
            if dev_id in keep:
                continue
            taken.append({"request": "r", "driver": dev_id[0], "pool": dev_id[1], "device": dev_id[2]})
            if dev_id not in held:  # a device held by a real claim keeps using its counters
                d.pop("consumesCounters", None)
    pin = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
           "metadata": {"name": PIN, "namespace": "other", "uid": f"uid-{PIN}"},
           "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "x"}}]}},
           "status": {"allocation": {"devices": {"results": taken}}}}
    return {**sc, "name": f"{sc['name']} check {case['name']}", "slices": slices, "claims": sc["claims"] + [pin],
            "cases": [case]}


def check_verdict(out: dict[str, Any], proposal: dict[str, Any]) -> str:
    """'' when the allocator, in the pinned scenario, allocated exactly the proposal; else why not."""
    if out.get("error"):
        return f"proposal rejected: {out['error']}"
    if not out["allocated"]:
        return "proposal rejected: the allocator cannot allocate the claim with only the proposed devices free"
    if keys(out["allocation"]) != keys(proposal):
        return f"proposal rejected: the allocator allocated {keys(out['allocation'])}, the proposal is {keys(proposal)}"
    return ""

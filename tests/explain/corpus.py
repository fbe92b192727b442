"""A seeded corpus of ResourceClaims over the sample hosts' ResourceSlices, for the agreement test
of ``explain`` with the scheduler's allocator.

The slices come from ``dra-framework discover -o yaml`` on the example configs (as a vendor
would produce them); scenarios add what a cluster adds: other claims' allocations (counters
and devices in use, shares of consumable capacity), device taints, a second node, and a pool
of shared devices with consumable capacity. Claims mix selectors written from the devices'
real attributes (string, int, bool, version, capacity, typos and unknown domains), counts,
allocationMode All, firstAvailable, matchAttribute/distinctAttribute constraints,
tolerations and capacity requests.
"""
from __future__ import annotations

import copy
import functools
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
API = "resource.k8s.io/v1"
# (name, config); a host whose config is missing is skipped (backends of other branches)
HOSTS = [("dgx-h100", "examples/configs/nvidia-dgx-h100.yaml"), ("example", "examples/configs/example.yaml"),
         ("sriov-minimal", "examples/configs/sriov-minimal.yaml"), ("sriov-e810", "examples/configs/sriov-e810.yaml"),
         ("tpu-v5e-8", "examples/configs/tpu-v5e-8.yaml"), ("fpga-d5005", "examples/configs/fpga-d5005.yaml"),
         ("fpga-u250", "examples/configs/fpga-u250.yaml")]


@functools.lru_cache(maxsize=None)
def _discover(config: str, node: str, version: str) -> str:
    r = subprocess.run([sys.executable, "-m", "dra_framework.cli", "discover", "-c", config, "--node-name", node,
                        "-o", "yaml", "--k8s-version", version], cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"discover {config}: {r.stderr}")
    return r.stdout


def discover(config: str, node: str, version: str) -> list[dict[str, Any]]:
    """The slices ``discover -o yaml`` writes for ``config`` on ``node`` with the rules of ``version``."""
    return yaml.safe_load(_discover(config, node, version))["items"]


def devices(slices: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(s["spec"]["driver"], s["spec"]["pool"]["name"], d) for s in slices for d in s["spec"].get("devices") or []]


def _cls(name: str, *exprs: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "DeviceClass", "metadata": {"name": name},
            "spec": {"selectors": [{"cel": {"expression": e}} for e in exprs]}}


def _qual(driver: str, name: str) -> tuple[str, str]:
    dom, sep, ident = name.partition("/")
    return (dom, ident) if sep else (driver, name)


def classes_for(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One class per driver, plus one per value of a string or bool attribute with 2-4 values."""
    out, seen = [], set()
    devs = devices(slices)
    for driver in sorted({d for d, _p, _x in devs}):
        out.append(_cls(f"all.{driver}", f'device.driver == "{driver}"'))
        values: dict[str, set[str]] = {}
        for drv, _p, dev in devs:
            if drv != driver:
                continue
            for name, a in dev.get("attributes", {}).items():
                if "string" in a or "bool" in a:
                    values.setdefault(name, set()).add(str(a.get("string", a.get("bool"))).lower())
        for name, vals in sorted(values.items()):
            if 2 <= len(vals) <= 4 and "/" not in name:
                for v in sorted(vals):
                    lit = v if v in ("true", "false") else f'"{v}"'
                    cname = f"{name.lower()}-{v}.{driver}".replace("_", "-").replace("+", "-").replace(" ", "-")
                    if cname not in seen and len(cname) <= 253:
                        seen.add(cname)
                        out.append(_cls(cname, f'device.driver == "{driver}"',
                                        f'device.attributes["{driver}"].{name} == {lit}'))
                break
    return out


def selector_pool(slices: list[dict[str, Any]], rng: random.Random) -> list[str]:
    """CEL selectors written from real attribute and capacity values of the devices."""
    out: list[str] = []
    devs = devices(slices)
    for driver, _pool, dev in rng.sample(devs, min(12, len(devs))):
        for name, a in dev.get("attributes", {}).items():
            dom, ident = _qual(driver, name)
            ref = f'device.attributes["{dom}"].{ident}'
            if "string" in a:
                v = a["string"]
                out += [f'{ref} == "{v}"', f'{ref} != "{v}"', f'{ref}.startsWith("{v[:3]}")',
                        f'{ref}.lowerAscii().contains("{v[-2:].lower()}")', f'{ref} in ["{v}", "other"]']
            elif "int" in a:
                out += [f"{ref} >= {a['int']}", f"{ref} == {a['int']}", f"{ref} < {a['int'] + 1}"]
            elif "bool" in a:
                out += [ref, f"!{ref}"]
            elif "version" in a:
                out += [f'{ref}.isGreaterThan(semver("{a["version"]}"))',
                        f'{ref}.compareTo(semver("{a["version"]}")) >= 0', f"{ref}.major() >= 1"]
        for name, c in dev.get("capacity", {}).items():
            dom, ident = _qual(driver, name)
            ref = f'device.capacity["{dom}"].{ident}'
            out += [f'{ref}.compareTo(quantity("{c["value"]}")) >= 0', f'{ref}.isGreaterThan(quantity("1"))',
                    f'{ref}.isLessThan(quantity("{c["value"]}"))']
        attrs = list(dev.get("attributes", {}))
        if attrs:
            dom, ident = _qual(driver, rng.choice(attrs))
            typo = ident.lower() if ident != ident.lower() else ident + "x"
            out += [f'device.attributes["{dom}"].{typo} == "x"',                       # typo: runtime error
                    f'has(device.attributes["{dom}"].{typo}) || device.driver == "{driver}"',
                    'device.attributes["unknown.example.com"].size() == 0']
    return sorted(set(out))


def taint(slices: list[dict[str, Any]], rng: random.Random, version: str) -> list[dict[str, Any]]:
    """Copies of the slices with NoSchedule/NoExecute (and None, 1.35+) taints on some devices."""
    out = copy.deepcopy(slices)
    effects = ["NoSchedule", "NoExecute"] + (["None"] if version >= "1.35" else [])
    for s in out:
        for d in s["spec"].get("devices") or []:
            if rng.random() < 0.35:
                d["taints"] = [{"key": rng.choice(["example.com/health", "example.com/maintenance"]),
                                "value": rng.choice(["bad", "soon"]), "effect": rng.choice(effects)}]
    return out


def shared_pool(node: str) -> list[dict[str, Any]]:
    """A pool of devices with consumable capacity (allowMultipleAllocations, request policies)."""
    devs = []
    for i in range(3):
        devs.append({"name": f"nic-{i}", "allowMultipleAllocations": True,
                     "attributes": {"model": {"string": "shared-x"}, "index": {"int": i}},
                     "capacity": {"bandwidth": {"value": "100G", "requestPolicy": {
                         "default": "10G", "validRange": {"min": "5G", "step": "5G"}}},
                                  "queues": {"value": "16", "requestPolicy": {"default": "2",
                                                                               "validValues": ["1", "2", "4", "8"]}}}})
    return [{"apiVersion": API, "kind": "ResourceSlice", "metadata": {"generateName": f"00000-shared.example.dev-{node}-"},
             "spec": {"driver": "shared.example.dev", "pool": {"name": f"{node}-shared", "generation": 1,
                                                                "resourceSliceCount": 1},
                      "nodeName": node, "devices": devs}}]


def _attr_names(slices: list[dict[str, Any]]) -> list[str]:
    """Fully qualified attribute names, for constraints."""
    names = set()
    for driver, _p, dev in devices(slices):
        for name in dev.get("attributes", {}):
            names.add(name if "/" in name else f"{driver}/{name}")
    return sorted(names)


def claim(rng: random.Random, name: str, classes: list[dict[str, Any]], sels: list[str], attrs: list[str],
          tolerate: bool, capacity: bool) -> dict[str, Any]:
    cnames = [c["metadata"]["name"] for c in classes]

    def one(rname: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"deviceClassName": rng.choice(cnames)}
        if rng.random() < 0.1:
            spec["allocationMode"] = "All"
        else:
            spec["count"] = rng.choice([1, 1, 1, 2, 2, 3, 4, 8, 9])
        if rng.random() < 0.6:
            spec["selectors"] = [{"cel": {"expression": e}} for e in rng.sample(sels, rng.choice([1, 1, 2]))]
        if tolerate and rng.random() < 0.6:
            spec["tolerations"] = [rng.choice([
                {"key": "example.com/health", "operator": "Exists"},
                {"key": "example.com/maintenance", "operator": "Equal", "value": "soon"},
                {"operator": "Exists", "effect": "NoSchedule"},
                {"key": "example.com/health", "operator": "Equal", "value": "other"}])]
        if capacity and rng.random() < 0.7:
            spec["capacity"] = {"requests": {k: v for k, v in rng.choice([
                {"bandwidth": "12G"}, {"bandwidth": "40G", "queues": "3"}, {"queues": "16"}, {"bandwidth": "101G"},
                {"bandwidth": "2G"}, {"queues": "5"}, {"memory": "1"}]).items()}}
        return spec
    requests = []
    for i in range(rng.choice([1, 1, 1, 2, 2, 3])):
        rname = f"r{i}"
        if rng.random() < 0.3:
            requests.append({"name": rname, "firstAvailable": [{"name": f"s{j}", **one(f"s{j}")}
                                                               for j in range(rng.choice([2, 3]))]})
        else:
            requests.append({"name": rname, "exactly": one(rname)})
    constraints = []
    if attrs and rng.random() < 0.35:
        # a constraint no device pair meets makes the allocator try every combination: keep it small
        requests = requests[:2]
        for r in requests:
            for one in ([r["exactly"]] if "exactly" in r else r["firstAvailable"]):
                if one.get("count", 1) > 2:
                    one["count"] = 2
        c: dict[str, Any] = {rng.choice(["matchAttribute", "matchAttribute", "distinctAttribute"]): rng.choice(attrs)}
        if len(requests) > 1 and rng.random() < 0.5:
            c["requests"] = [r["name"] for r in rng.sample(requests, 2)]
        constraints.append(c)
    return {"apiVersion": API, "kind": "ResourceClaim", "metadata": {"name": name, "namespace": "default",
                                                                     "uid": f"uid-{name}"},
            "spec": {"devices": {"requests": requests, "constraints": constraints}}}


def allocated(name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": "other", "uid": f"uid-other-{name}"},
            "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "x"}}]}},
            "status": {"allocation": {"devices": {"results": results}}}}


def in_use(slices: list[dict[str, Any]], rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Claims of other pods holding ``n`` random devices whose counters fit together (first fit)."""
    from dra_framework.explain.model import gather_pools
    from dra_framework.explain.state import AllocatedState

    node = {"metadata": {"name": slices[0]["spec"].get("nodeName", "")}}
    out: list[dict[str, Any]] = []
    picked = rng.sample(devices(slices), min(len(devices(slices)), n * 3))
    for driver, pool, dev in picked:
        if len(out) >= n:
            break
        cand = out + [allocated(f"held-{len(out)}", [{"request": "r", "driver": driver, "pool": pool,
                                                       "device": dev["name"]}])]
        st = AllocatedState.from_claims(cand)
        if all(v >= 0 for p in gather_pools(slices, node) for cs in st.available_counters(p, False).values()
               for v in cs.values()):
            out = cand
    return out


def scenarios(version: str, per_scenario: int = 20, seed: int = 18) -> list[dict[str, Any]]:
    """``[{"name", "nodeName", "slices", "classes", "claims", "cases": [{"name", "claim"}]}]``."""
    rng = random.Random(seed)
    out = []
    for host, config in HOSTS:
        if not (REPO / config).exists():
            continue
        base = discover(config, "node-1", version)
        variants = [("plain", base, []), ("in-use", base, in_use(base, rng, 4)),
                    ("tainted", taint(base, rng, version), []),
                    ("two-nodes", base + discover(config, "node-2", version), in_use(base, rng, 2))]
        if host == "example":
            shared = shared_pool("node-1")
            share = allocated("share", [{"request": "r", "driver": "shared.example.dev", "pool": "node-1-shared",
                                         "device": "nic-0", "shareID": "4b5c0ce6-1b0c-4b32-9b0e-5e0f5e2a0001",
                                         "consumedCapacity": {"bandwidth": "90G", "queues": "8"}}])
            variants.append(("shared", base + shared, [share]))
        for vname, slices, held in variants:
            classes = classes_for(slices)
            sels, attrs = selector_pool(slices, rng), _attr_names(slices)
            cases = []
            decide = _decider(slices, classes, held, version)
            while len(cases) < per_scenario:
                c = claim(rng, f"{host}-{vname}-{len(cases)}", classes, sels, attrs, vname == "tainted", vname == "shared")
                if decide(c):
                    cases.append({"name": c["metadata"]["name"], "claim": c})
            out.append({"name": f"{host}/{vname}", "nodeName": "node-1", "slices": slices, "classes": classes,
                        "claims": held, "cases": cases})
    return out


def named(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The slices with the names the apiserver would give them (generateName + a fixed suffix)."""
    out = copy.deepcopy(slices)
    for s in out:
        s["metadata"] = {"name": s["metadata"].get("name") or s["metadata"]["generateName"] + "x"}
    return out


def _decider(slices: list[dict[str, Any]], classes: list[dict[str, Any]], held: list[dict[str, Any]], version: str):
    """False for a claim whose search explodes (every combination of hundreds of devices): the
    scheduler gives up on those after 10 s (DRASchedulerFilterTimeout) and so does the oracle
    after a minute, at a point that depends on the machine. Such claims are drawn again."""
    from dra_framework.explain.core import Explainer
    from dra_framework.explain.inputs import Inputs, _default_claim_spec
    from dra_framework.explain.state import AllocatedState

    inputs = Inputs()
    for o in copy.deepcopy(slices + classes + held):
        inputs.add(o, "corpus")
    ex = Explainer(inputs, version == "1.34", max_steps=20_000)
    state = AllocatedState.from_claims(inputs.claims)

    def decide(c: dict[str, Any]) -> bool:
        spec = copy.deepcopy(c["spec"])
        _default_claim_spec(spec, "corpus")
        v = ex.search({**c, "spec": spec}, "node-1", state)
        # the 1.34 allocator panics (and the batch tool with it) where explain says it crashes
        return not any(t in (v["error"] or "") for t in ("explain gave up", "1.34 allocator crashes"))
    return decide

"""``dra-framework explain`` through the command line, offline, on the sample DGX H100 host
(``discover -o yaml`` output as is) and the example backend's host."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EX = REPO / "examples" / "explain"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dra_framework.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dgx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dgx") / "slices.yaml"
    r = cli("discover", "-c", "examples/configs/nvidia-dgx-h100.yaml", "--node-name", "node-1", "-o", "yaml")
    assert r.returncode == 0, r.stderr
    out.write_text(r.stdout)
    return out


def test_typo_in_a_cel_attribute_name(dgx):
    r = cli("explain", "-f", str(dgx), "-f", str(EX / "dgx-classes.yaml"), "-f", str(EX / "claim-typo.yaml"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ResourceClaim default/h100: ERROR on node node-1" in r.stdout
    # the scheduler's own error text, for the first device its search reaches
    assert ("allocator error: claim default/h100: selector #0 on device gpu.nvidia.com/node-1/gpu-0000-1b-00-0: "
            "CEL runtime error: no such key: productname.") in r.stdout
    assert "missing-attribute (8)" in r.stdout and "(did you mean productName?)" in r.stdout
    assert 'device.attributes["gpu.nvidia.com"].productname: not set' in r.stdout


def test_counter_consumed_by_a_mig_partition_of_another_claim(dgx):
    r = cli("explain", "-f", str(dgx), "-f", str(EX / "dgx-classes.yaml"), "-f", str(EX / "mig-in-use.yaml"),
            "-f", str(EX / "claim-eight-gpus.yaml"), "-o", "json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    (c,) = report["claims"]
    assert c["source"].startswith("Pod default/trainer-0: spec.resourceClaims[0]")
    assert c["satisfiable"] is False and c["error"] is None
    (req,) = c["requests"]
    assert len(req["matching"]) == 7
    blocked = next(d for d in req["devices"] if d["device"] == "gpu.nvidia.com/node-1/gpu-0000-1b-00-0")
    assert blocked["reason"] == "counters"
    assert "consumed by team-b/inference (gpu-0000-1b-00-0-mig-3g40gb-9-0)" in blocked["detail"]
    assert c["why"] == ["request gpus: needs 8 device(s), 7 match and are free"]


def test_satisfiable_claim_gets_an_allocation_and_exit_0(dgx):
    claim = yaml.safe_load((EX / "claim-typo.yaml").read_text())
    claim["spec"]["devices"]["requests"][0]["exactly"]["selectors"][0]["cel"]["expression"] = \
        'device.attributes["gpu.nvidia.com"].productName == "NVIDIA H100 80GB HBM3"'
    claim["spec"]["devices"]["requests"][0]["exactly"]["count"] = 2
    claim["spec"]["devices"]["constraints"] = [{"matchAttribute": "resource.kubernetes.io/numaNode"}]
    r = cli("explain", "-f", str(dgx), "-f", str(EX / "dgx-classes.yaml"), "-f", "-", "-o", "yaml",
            stdin=yaml.safe_dump(claim))
    assert r.returncode == 0, r.stdout + r.stderr
    (c,) = yaml.safe_load(r.stdout)["claims"]
    got = [x["device"] for x in c["allocation"]["devices"]["results"]]
    assert got == ["gpu-0000-1b-00-0", "gpu-0000-43-00-0"]


@pytest.mark.parametrize("doc, message", [
    ("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n", "kind 'ConfigMap' is not one of"),
    ("apiVersion: resource.k8s.io/v1beta1\nkind: ResourceClaim\nmetadata: {name: x}\nspec: {}\n",
     "ResourceClaim apiVersion 'resource.k8s.io/v1beta1'"),
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: x}\n"
     "spec: {devices: {requests: [{name: a}]}}\n", "spec.devices.requests[0] (a): exactly one of exactly and firstAvailable"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {resourceClaims: [{name: c, resourceClaimName: gone}]}\n",
     "Pod default/p: spec.resourceClaims[0].resourceClaimName: ResourceClaim default/gone not found"),
    ("a: [b\n", "not YAML or JSON"),
    # strict fields, as kubectl --validate=strict, in every kind explain reads
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: x}\n"
     "spec: {devices: {requets: [{name: a, exactly: {deviceClassName: c}}]}}\n",
     "ResourceClaim default/x: spec.devices.requets: unknown field"),
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: x, namespace: ns}\n"
     "spec: {devices: {requests: [{name: a, exactly: {deviceClassName: c, coutn: 2, selectors: [{cel: {expresion: x}}]}}]}}\n",
     "ResourceClaim ns/x: spec.devices.requests[0].exactly.coutn: unknown field; "
     "spec.devices.requests[0].exactly.selectors[0].cel.expresion: unknown field"),
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceClaimTemplate\nmetadata: {name: t}\n"
     "spec: {spec: {devices: {requests: [{name: a, firstAvailable: [{name: s, deviceClassName: c, count: 1, "
     "tolerations: [{key: k, operater: Exists}]}]}]}}}\n",
     "ResourceClaimTemplate default/t: spec.spec.devices.requests[0].firstAvailable[0].tolerations[0].operater: unknown field"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {resourceClaim: [{name: c, resourceClaimName: x}]}\n",
     "Pod default/p: spec.resourceClaim: unknown field"),
    ("apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: c}\nspec: {selector: []}\n",
     "DeviceClass c: spec.selector: unknown field"),
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata: {name: s}\nspec: {driver: d, nodeName: n, "
     "pool: {name: p, generation: 1, resourceSliceCount: 1}, devices: [{name: a, attributes: {x: {strng: v}}}]}\n",
     "ResourceSlice s: spec.devices[0].attributes[x].strng: unknown field"),
    # names as the apiserver checks them
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: t\u00fc}\nspec: {devices: {}}\n",
     "ResourceClaim default/t\u00fc: metadata.name: Invalid value: 't\u00fc': a lowercase RFC 1123 subdomain"),
    ("apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: x, namespace: Team.A}\nspec: {devices: {}}\n",
     "metadata.namespace: Invalid value: 'Team.A': a lowercase RFC 1123 label"),
])
def test_bad_input_exits_2_naming_the_object_and_field(tmp_path, doc, message):
    f = tmp_path / "in.yaml"
    f.write_text(doc)
    r = cli("explain", "-f", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert str(f) in r.stderr or "Pod default/p" in message  # a missing claim is named by the pod's field
    assert "Traceback" not in r.stderr


def test_example_host_firstavailable_and_all(tmp_path):
    r = cli("discover", "-c", "examples/configs/example.yaml", "--node-name", "node-1", "-o", "json")
    assert r.returncode == 0, r.stderr
    (tmp_path / "slices.json").write_text(r.stdout)
    docs = [
        {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "acc"},
         "spec": {"selectors": [{"cel": {"expression": 'device.driver == "example.dra.dev"'}}]}},
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c", "namespace": "ns"},
         "spec": {"devices": {"requests": [
             {"name": "big", "firstAvailable": [
                 {"name": "whole", "deviceClassName": "acc", "count": 5,
                  "selectors": [{"cel": {"expression": '!device.attributes["example.dra.dev"].partition'}}]},
                 {"name": "halves", "deviceClassName": "acc", "count": 2,
                  "selectors": [{"cel": {"expression": 'device.attributes["example.dra.dev"].partition'}}]}]},
             {"name": "rest", "exactly": {"deviceClassName": "acc", "allocationMode": "All", "selectors": [
                 {"cel": {"expression": 'device.attributes["example.dra.dev"].index == 3'}},
                 {"cel": {"expression": '!device.attributes["example.dra.dev"].partition'}}]}}]}}},
    ]
    (tmp_path / "objs.yaml").write_text(yaml.safe_dump_all(docs))
    r = cli("explain", "-f", str(tmp_path / "slices.json"), "-f", str(tmp_path / "objs.yaml"), "-o", "json")
    report = json.loads(r.stdout)
    (c,) = report["claims"]
    assert [x["request"] for x in c["requests"]] == ["big/whole", "big/halves", "rest"]
    whole = c["requests"][0]
    assert len(whole["matching"]) == 4 and whole["count"] == 5
    results = [(x["request"], x["device"]) for x in c["allocation"]["devices"]["results"]]
    # halves of accelerators 0 and 1; then every device of index 3 whose counters are still free
    assert results[:2] == [("big/halves", "acc-0-half-0"), ("big/halves", "acc-0-half-1")]
    assert r.returncode == 0


def test_allocator_errors_name_the_claim_with_its_default_namespace(tmp_path):
    f = tmp_path / "in.yaml"
    f.write_text("apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: t}\n"
                 "spec: {devices: {requests: [{name: a, exactly: {deviceClassName: gone}}]}}\n")
    r = cli("explain", "-f", str(f))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ResourceClaim default/t: ERROR" in r.stdout
    assert "allocator error: claim default/t, request a: could not retrieve device class gone" in r.stdout


def _pod_objects(second_count: int) -> list[dict]:
    """Two devices (only ``a`` is big); a pod whose first claim takes any device and whose
    second claim needs ``second_count`` big ones."""
    api = "resource.k8s.io/v1"
    sl = {"apiVersion": api, "kind": "ResourceSlice", "metadata": {"name": "s"},
          "spec": {"driver": "d.example.com", "nodeName": "node-1",
                   "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
                   "devices": [{"name": "a", "attributes": {"big": {"bool": True}}},
                               {"name": "b", "attributes": {"big": {"bool": False}}}]}}
    cls = {"apiVersion": api, "kind": "DeviceClass", "metadata": {"name": "c"},
           "spec": {"selectors": [{"cel": {"expression": 'device.driver == "d.example.com"'}}]}}
    any_one = {"apiVersion": api, "kind": "ResourceClaim", "metadata": {"name": "any", "namespace": "default"},
               "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "c"}}]}}}
    big = {"apiVersion": api, "kind": "ResourceClaim", "metadata": {"name": "big", "namespace": "default"},
           "spec": {"devices": {"requests": [{"name": "r", "exactly": {
               "deviceClassName": "c", "count": second_count,
               "selectors": [{"cel": {"expression": 'device.attributes["d.example.com"].big'}}]}}]}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "x"}],
                    "resourceClaims": [{"name": "one", "resourceClaimName": "any"},
                                       {"name": "two", "resourceClaimName": "big"}]}}
    return [sl, cls, any_one, big, pod]


def test_a_pods_claims_are_allocated_together(tmp_path):
    """The scheduler allocates all claims of a pod in one search: the first claim's first choice
    (device a) is given up so that the second claim, which only a fits, gets it."""
    f = tmp_path / "pod.yaml"
    f.write_text(yaml.safe_dump_all(_pod_objects(1)))
    r = cli("explain", "-f", str(f), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    claims = json.loads(r.stdout)["claims"]
    got = {c["claim"]: [x["device"] for x in c["allocation"]["devices"]["results"]] for c in claims}
    assert got == {"default/any": ["b"], "default/big": ["a"]}
    # the per-device reasons of one claim see the other claim's devices as taken
    big = next(c for c in claims if c["claim"] == "default/big")
    b = next(d for d in big["requests"][0]["devices"] if d["device"].endswith("/b"))
    assert b["reason"] == "selector"
    anyc = next(c for c in claims if c["claim"] == "default/any")
    a = next(d for d in anyc["requests"][0]["devices"] if d["device"].endswith("/a"))
    assert a["reason"] == "allocated" and a["detail"] == "allocated to default/big"


def test_a_pods_claims_competing_for_the_same_device(tmp_path):
    f = tmp_path / "pod.yaml"
    objs = _pod_objects(1)
    objs[2]["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = \
        [{"cel": {"expression": 'device.attributes["d.example.com"].big'}}]
    f.write_text(yaml.safe_dump_all(objs))
    r = cli("explain", "-f", str(f), "-o", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    claims = json.loads(r.stdout)["claims"]
    assert [c["satisfiable"] for c in claims] == [False, False]
    assert all("alone fits, but not together with the pod's other claims" in c["why"][0] for c in claims)


def test_pod_with_two_claims_on_the_dgx(dgx):
    """docs/explain.md's worked example: seven GPUs of any kind and the one at ..:1b:00.0."""
    r = cli("explain", "-f", str(dgx), "-f", str(EX / "dgx-classes.yaml"), "-f", str(EX / "pod-two-claims.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Pod team-a/trainer: spec.resourceClaims[1] (ResourceClaim team-a/numa0-gpu): SATISFIABLE" in r.stdout
    assert "allocated (1): allocated to team-a/numa0-gpu\n      gpu-0000-1b-00-0" in r.stdout
    assert "gpu: gpu.nvidia.com/node-1/gpu-0000-1b-00-0\n" in r.stdout
    assert '[device.attributes["resource.kubernetes.io"].numaNode = 1]' in r.stdout

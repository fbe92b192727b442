"""Conversion, validation and splitting (pure functions, no API server)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from dra_framework.composition import DriverInventory
from dra_framework.model import (
    Capacity, CounterConsumption, CounterSet, Device, NodeSelection, Pool, RequestPolicy, Taint,
    TaintEffect, ValidRange, Version,
)
from dra_framework.slices import Limits, ServerInfo, build_pools, desired_slices, model_pool_name, normalize_version
from dra_framework.slices.validate import SEMVER_RE, device_errors, qualified_name_errors, slice_errors

DRIVER = "gpu.example.com"
NODE = "node-1"
L37 = Limits.for_server(ServerInfo(minor=37))
L34 = Limits.for_server(ServerInfo(minor=34))


def build(pools, limits=L37, **kw):
    return build_pools(pools, driver=DRIVER, node_name=NODE, limits=limits, **kw)


# --- versions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,want", [
    ("535.183.06", "535.183.6"),
    ("6.19.14.31400000", "6.19.14+31400000"),
    ("12.4", "12.4.0"),
    ("12", "12.0.0"),
    ("v1.2.3", "1.2.3"),
    ("1.2.3", "1.2.3"),
    ("1.2.3-rc.1+b5", "1.2.3-rc.1+b5"),
    ("1.2.3.4-rc1", "1.2.3-rc1+4"),
    ("1.2.3.4+meta", "1.2.3+4.meta"),
    ("0009.0", "9.0.0"),
    ("abc", None),
    ("1..2", None),
    ("", None),
    ("1.2.3-" + "a" * 70, None),
])
def test_normalize_version(raw, want):
    assert normalize_version(raw) == want


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=6))
def test_normalize_numeric_versions_always_valid(parts):
    raw = ".".join(str(p) for p in parts)
    out = normalize_version(raw)
    if len(raw) <= 60:
        assert out is not None
    if out is not None:
        assert SEMVER_RE.match(out) and len(out) <= 64
        assert [int(x) for x in out.split("+")[0].split(".")] == (parts + [0, 0])[:3]


# --- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ok", [
    ("a" * 32, True), ("a" * 33, False),
    ("d" * 63 + "/x", True), ("d" * 64 + "/x", False),
    ("example.com/_id9", True), ("Example.COM/x", True), ("9abc", False), ("a-b", False),
    ("a/b/c", False), ("/x", False), ("x.io/", False), ("x_y.io/z", False),
])
def test_qualified_names(name, ok):
    assert (not qualified_name_errors(name)) == ok


# --- conversion -----------------------------------------------------------------------------------

def gpu(name="gpu-0", **kw):
    return Device(name, attributes={"model": "H100", "driverVersion": Version("535.183.06"), "index": 0,
                                    "mig": False}, capacity={"memory": "80Gi"}, **kw)


def test_node_pool_conversion():
    slices, rep = desired_slices([Pool(devices=[gpu()])], driver=DRIVER, node_name=NODE, node_uid="uid-1")
    assert rep.ok and not rep.issues
    (s,) = slices
    assert s["apiVersion"] == "resource.k8s.io/v1"
    assert s["metadata"]["generateName"] == f"00000-{DRIVER}-{NODE}-"
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "uid-1", "controller": True}]
    assert s["spec"]["nodeName"] == NODE
    assert s["spec"]["pool"] == {"name": NODE, "generation": 1, "resourceSliceCount": 1}
    d = s["spec"]["devices"][0]
    assert d["attributes"] == {"model": {"string": "H100"}, "driverVersion": {"version": "535.183.6"},
                               "index": {"int": 0}, "mig": {"bool": False}}
    assert d["capacity"] == {"memory": {"value": "80Gi"}}


def test_full_device_fields():
    dev = Device("gpu-0", attributes={"a": 1},
                 capacity={"memory": Capacity(1024, RequestPolicy(default=256, valid_range=ValidRange(min=0, max=1024, step=256))),
                           "cores": Capacity(8, RequestPolicy(default=2, valid_values=[1, 2, 4, 8]))},
                 consumes_counters=[CounterConsumption("cs-0", {"mem": "1Gi"})],
                 taints=[Taint("example.com/xid", "48", TaintEffect.NO_EXECUTE), Taint("example.com/t", "", TaintEffect.NONE)],
                 allow_multiple_allocations=True)
    desired, rep = build([Pool(devices=[dev], counter_sets=[CounterSet("cs-0", {"mem": "80Gi"})])])
    assert rep.ok, [str(i) for i in rep.issues]
    sl = desired[NODE].slices
    assert sl[0] == {"sharedCounters": [{"name": "cs-0", "counters": {"mem": {"value": "80Gi"}}}]}
    d = sl[1]["devices"][0]
    assert d["capacity"]["memory"]["requestPolicy"] == {"default": "256", "validRange": {"min": "0", "max": "1024", "step": "256"}}
    assert d["capacity"]["cores"]["requestPolicy"] == {"default": "2", "validValues": ["1", "2", "4", "8"]}
    assert d["consumesCounters"] == [{"counterSet": "cs-0", "counters": {"mem": {"value": "1Gi"}}}]
    assert d["taints"] == [{"key": "example.com/xid", "value": "48", "effect": "NoExecute"},
                           {"key": "example.com/t", "effect": "None"}]
    assert d["allowMultipleAllocations"] is True


def test_bad_device_is_left_out_and_named():
    devs = [gpu("gpu-0"), Device("GPU_1"), gpu("gpu-2"), Device("gpu-3", attributes={"s": "x" * 65}),
            Device("gpu-4", attributes={"k" * 33: 1}), Device("gpu-5", capacity={"memory": "80 GiB"})]
    desired, rep = build([Pool(devices=devs)])
    names = [d["name"] for s in desired[NODE].slices for d in s.get("devices", [])]
    assert names == ["gpu-0", "gpu-2"]
    assert rep.invalid_devices == {NODE: {"GPU_1", "gpu-3", "gpu-4", "gpu-5"}}
    msgs = {(i.pool, i.device, i.field) for i in rep.errors}
    assert (NODE, "GPU_1", "name") in msgs
    assert (NODE, "gpu-3", "attributes[s].string") in msgs
    assert (NODE, "gpu-5", "capacity[memory].value") in msgs
    assert not rep.ok


def test_unnormalizable_version_published_as_string_with_warning():
    desired, rep = build([Pool(devices=[Device("d", attributes={"fw": Version("A1.b")})])])
    assert desired[NODE].slices[0]["devices"][0]["attributes"]["fw"] == {"string": "A1.b"}
    assert rep.ok and len(rep.warnings) == 1 and rep.warnings[0].device == "d"


def test_limits_per_device():
    attrs = {f"a{i}": i for i in range(32)}
    ok, rep = build([Pool(devices=[Device("d", attributes=attrs)])])
    assert rep.ok
    attrs["a32"] = 1
    _, rep = build([Pool(devices=[Device("d", attributes=attrs)])])
    assert rep.invalid_devices == {NODE: {"d"}}
    _, rep = build([Pool(devices=[Device("d", taints=[Taint(f"k{i}") for i in range(16)])])])
    assert rep.ok

    # Too many taints, or an effect the server does not know: the device stays published (it must
    # not vanish because health taints came), the least severe taints are left out with a warning.
    def published_taints(desired):
        return desired[NODE].slices[0]["devices"][0].get("taints", [])

    d, rep = build([Pool(devices=[Device("d", taints=[Taint(f"k{i}") for i in range(17)])])])
    assert rep.ok and len(published_taints(d)) == 16 and rep.warnings[0].field == "taints"
    many = [Taint("info", effect=TaintEffect.NONE)] + [Taint(f"k{i}") for i in range(3)] + \
        [Taint("lost", effect=TaintEffect.NO_EXECUTE), Taint("k9")]
    d, rep = build([Pool(devices=[Device("d", taints=many)])], limits=L34)
    keys = [t["key"] for t in published_taints(d)]
    assert rep.ok and len(keys) == 4 and keys[0] == "lost" and "info" not in keys
    d, rep = build([Pool(devices=[Device("d", taints=[Taint("k", effect=TaintEffect.NONE)])])], limits=L34)
    assert rep.ok and published_taints(d) == [] and rep.warnings


def test_domain_conflict():
    _, rep = build([Pool(devices=[Device("d", attributes={"model": "a", f"{DRIVER}/model": "a"})])])
    assert rep.invalid_devices == {NODE: {"d"}}
    _, rep = build([Pool(devices=[Device("d", attributes={"model": "a", "other.io/model": "a"})])])
    assert rep.ok


def test_counters_rules():
    cs = [CounterSet("cs-0", {"mem": 10, "sm": 4}), CounterSet("Bad_Set", {"x": 1}), CounterSet("cs-2", {f"c{i}": 1 for i in range(33)})]
    devs = [Device("ok", consumes_counters=[CounterConsumption("cs-0", {"mem": 1})]),
            Device("nosuch", consumes_counters=[CounterConsumption("cs-9", {"mem": 1})]),
            Device("badset", consumes_counters=[CounterConsumption("Bad_Set", {"x": 1})]),
            Device("nocounter", consumes_counters=[CounterConsumption("cs-0", {"zzz": 1})]),
            Device("three", consumes_counters=[CounterConsumption(f"cs-{i}", {"mem": 1}) for i in range(3)])]
    desired, rep = build([Pool(devices=devs, counter_sets=cs)])
    assert rep.invalid_devices == {NODE: {"nosuch", "badset", "nocounter", "three"}}
    assert rep.invalid_counter_sets == {NODE: {"Bad_Set", "cs-2"}}
    assert [s.get("sharedCounters", [{}])[0].get("name") for s in desired[NODE].slices] == ["cs-0", None]


def test_request_policy_rules():
    def dev(cap, multi=True):
        return Device("d", capacity={"c": cap}, allow_multiple_allocations=multi)
    cases = [
        (Capacity(10, RequestPolicy(default=2, valid_values=[1, 2, 4])), True),
        (Capacity(10, RequestPolicy(default=2, valid_values=[1, 2, 4])), True),
        (Capacity(10, RequestPolicy(default=3, valid_values=[1, 2, 4])), False),  # default not listed
        (Capacity(10, RequestPolicy(default=2, valid_values=[2, 1])), False),  # not ascending
        (Capacity(10, RequestPolicy(default=2, valid_values=[2, 20])), False),  # > value
        (Capacity(10, RequestPolicy(default=2, valid_values=list(range(1, 12)))), False),  # > 10
        (Capacity(10, RequestPolicy(valid_values=[1])), False),  # default missing
        (Capacity(8, RequestPolicy(default=4, valid_range=ValidRange(min=0, max=8, step=2))), True),
        (Capacity(8, RequestPolicy(default=3, valid_range=ValidRange(min=0, max=8, step=2))), False),
        (Capacity(8, RequestPolicy(default=4, valid_range=ValidRange(min=0, max=9, step=1))), False),
        (Capacity(8, RequestPolicy(default=4, valid_range=ValidRange(min=2, max=4))), True),
        (Capacity(8, RequestPolicy(default=1, valid_range=ValidRange(min=2))), False),
    ]
    for cap, ok in cases:
        _, rep = build([Pool(devices=[dev(cap)])])
        assert rep.ok == ok, (cap, [str(i) for i in rep.issues])
    _, rep = build([Pool(devices=[dev(cases[0][0], multi=False)])])
    assert not rep.ok


def test_duplicate_devices_keep_first():
    desired, rep = build([Pool(devices=[Device("a", attributes={"x": 1}), Device("a", attributes={"x": 2})])])
    assert desired[NODE].slices[0]["devices"] == [{"name": "a", "attributes": {"x": {"int": 1}}}]
    assert rep.invalid_devices == {NODE: {"a"}}


def test_list_attributes_by_version():
    pool = [Pool(devices=[Device("d", attributes={"numa": [0, 1]})])]
    desired, rep = build(pool)
    assert desired[NODE].slices[0]["devices"][0]["attributes"] == {"numa": {"ints": [0, 1]}}
    desired, rep = build(pool, limits=Limits.for_server(ServerInfo(minor=35)))
    assert "attributes" not in desired[NODE].slices[0]["devices"][0]
    assert rep.ok and rep.warnings


def test_pools_and_selection():
    inv = DriverInventory(pools={
        None: Pool(devices=[gpu()]),
        "nics": Pool(name="nics", devices=[Device("nic-0")]),
        "fabric": Pool(name="fabric", devices=[Device("sw-0")], selection=NodeSelection(
            node_local=False, node_selector={"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "rack", "operator": "In", "values": ["r1"]}]}]})),
        "global": Pool(name="global", devices=[], selection=NodeSelection(node_local=False, all_nodes=True)),
    })
    slices, rep = desired_slices(inv, driver=DRIVER, node_name=NODE, node_uid="u")
    by_pool = {s["spec"]["pool"]["name"]: s for s in slices}
    assert set(by_pool) == {NODE, f"{NODE}/nics", "fabric", "global"}
    assert by_pool[f"{NODE}/nics"]["spec"]["nodeName"] == NODE
    assert "nodeName" not in by_pool["fabric"]["spec"] and by_pool["fabric"]["spec"]["nodeSelector"]
    assert by_pool["global"]["spec"]["allNodes"] is True
    assert "devices" not in by_pool["global"]["spec"]  # empty pool: one empty slice
    assert model_pool_name(f"{NODE}/nics", NODE) == "nics" and model_pool_name(NODE, NODE) is None
    for s in slices:
        assert not slice_errors(s["spec"], L37), s


# --- splitting ------------------------------------------------------------------------------------

def test_split_128_and_64():
    devs = [Device(f"d-{i:03d}") for i in range(129)]
    desired, _ = build([Pool(devices=list(reversed(devs)))])
    sl = desired[NODE].slices
    assert [len(s["devices"]) for s in sl] == [128, 1]
    assert sl[0]["devices"][0]["name"] == "d-000"  # sorted by name
    devs[5] = Device("d-005", taints=[Taint("k")])
    desired, _ = build([Pool(devices=devs)])
    assert [len(s["devices"]) for s in desired[NODE].slices] == [64, 64, 1]
    desired, _ = build([Pool(devices=[Device(f"d-{i:03d}") for i in range(100)])], taints_possible=True)
    assert [len(s["devices"]) for s in desired[NODE].slices] == [64, 36]
    for s in desired[NODE].slices:
        assert not slice_errors({"driver": DRIVER, "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 2},
                                 "nodeName": NODE, **s}, L37)


def test_split_counter_sets_separate_and_stable():
    sets = [CounterSet(f"cs-{i:02d}", {"c": 1}) for i in range(17)]
    devs = [Device(f"d-{i}", consumes_counters=[CounterConsumption("cs-00", {"c": 1})]) for i in range(3)]
    desired, rep = build([Pool(devices=devs, counter_sets=sets)])
    assert rep.ok
    sl = desired[NODE].slices
    assert [len(s.get("sharedCounters", [])) for s in sl] == [8, 8, 1, 0]
    assert all(not ("sharedCounters" in s and "devices" in s) for s in sl)


def test_split_134_groups_counters_with_devices():
    sets = [CounterSet(f"cs-{i}", {f"c{j}": 1 for j in range(14)}) for i in range(3)]
    devs = [Device(f"d-{i}-{k}", consumes_counters=[CounterConsumption(f"cs-{i}", {"c0": 1})]) for i in range(3) for k in range(2)]
    devs.append(Device("plain"))
    desired, rep = build([Pool(devices=devs, counter_sets=sets)], limits=L34)
    assert rep.ok, [str(i) for i in rep.issues]
    sl = desired[NODE].slices
    assert [[c["name"] for c in s.get("sharedCounters", [])] for s in sl] == [["cs-0", "cs-1"], ["cs-2"], []]
    assert [d["name"] for d in sl[0]["devices"]] == ["d-0-0", "d-0-1", "d-1-0", "d-1-1"]
    for s in sl:
        assert not slice_errors({"driver": DRIVER, "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 3},
                                 "nodeName": NODE, **s}, L34)


def test_empty_pool_one_empty_slice():
    desired, rep = build([Pool()])
    assert desired[NODE].slices == [{}]


def test_invalid_pool_name_reported():
    desired, rep = build([Pool(name="Bad Pool", devices=[Device("a")])])
    assert desired == {} and rep.invalid_devices == {f"{NODE}/Bad Pool": {"a"}}


def test_device_errors_api_form():
    assert device_errors({"name": "a", "attributes": {"x": {}}}, L37) == [("attributes[x]", "exactly one value must be specified")]


def test_slice_rules_134_vs_137():
    """Rules that differ between 1.34 and 1.35+ (checked against the servers in test_apiserver.py)."""
    def spec(**kw):
        return {"driver": DRIVER, "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1}, "nodeName": NODE, **kw}

    def cons(*sets, counters=("c",)):
        return [{"counterSet": s, "counters": {c: {"value": "1"} for c in counters}} for s in sets]

    def cset(name, n=1):
        return {"name": name, "counters": {f"c{i}" if n > 1 else "c": {"value": "1"} for i in range(n)}}

    # 1.34: a consumed set (and counter) must be defined in the same slice; 1.35+: elsewhere in the pool.
    away = spec(devices=[{"name": "d", "consumesCounters": cons("cs")}])
    assert slice_errors(away, L34) and not slice_errors(away, L37)
    here = spec(sharedCounters=[cset("cs")], devices=[{"name": "d", "consumesCounters": cons("cs")}])
    assert not slice_errors(here, L34) and slice_errors(here, L37)
    unknown = spec(sharedCounters=[cset("cs")], devices=[{"name": "d", "consumesCounters": cons("cs", counters=("x",))}])
    assert [f for f, _ in slice_errors(unknown, L34)] == ["devices[0].consumesCounters[0].counters[x]"]
    # No limit on entries per device on 1.34 (2 on 1.35+), but ≤32 consumed counters per device.
    three = spec(sharedCounters=[cset(f"cs-{i}") for i in range(3)],
                 devices=[{"name": "d", "consumesCounters": cons("cs-0", "cs-1", "cs-2")}])
    assert not slice_errors(three, L34)
    assert device_errors({"name": "d", "consumesCounters": cons("a", "b", counters=[f"c{i}" for i in range(17)])}, L34)
    assert not device_errors({"name": "d", "consumesCounters": cons("a", "b", counters=[f"c{i}" for i in range(17)])}, L37)
    # 128 devices per slice on 1.34 even with taints or counters; 64 on 1.35+.
    tainted = spec(devices=[{"name": f"d{i}", "taints": [{"key": "k", "effect": "NoSchedule"}]} for i in range(65)])
    assert not slice_errors(tainted, L34) and slice_errors(tainted, L37)
    # 1.34: ≤32 counters over all sets, any number of sets; 1.35+: ≤8 sets of ≤32 counters.
    nine = spec(sharedCounters=[cset(f"cs-{i}") for i in range(9)])
    assert not slice_errors(nine, L34) and slice_errors(nine, L37)
    two17 = spec(sharedCounters=[cset(f"cs-{i}", 17) for i in range(2)])
    assert slice_errors(two17, L34) and not slice_errors(two17, L37)

"""SliceController logic against an in-memory API (tests/slices/fakeapi.py)."""
from __future__ import annotations

import asyncio

import pytest

from dra_framework.model import CounterConsumption, CounterSet, Device, NodeSelection, Pool, Taint
from dra_framework.slices import SliceController, UnsupportedServerError
from dra_framework.slices.controller import NodeNotFoundError, dropped_paths, normalize_spec

from .fakeapi import FakeKube, api_error

DRIVER = "gpu.example.com"
NODE = "node-1"


def devs(n, prefix="d", **kw):
    return [Device(f"{prefix}-{i:03d}", attributes={"i": i}, **kw) for i in range(n)]


def ctrl(fake, **kw):
    kw.setdefault("debounce_seconds", 0.01)
    kw.setdefault("sync_delay", 0.05)
    kw.setdefault("retry_seconds", 0.01)
    return SliceController(None, DRIVER, NODE, api=fake, **kw)


async def run(c, pools, timeout=5):
    c.update(pools)
    await c.wait_synced(timeout)


def gens(fake, pool=NODE):
    return sorted({(o["spec"]["pool"]["generation"], o["spec"]["pool"]["resourceSliceCount"]) for o in fake.pool_slices(pool)})


def assert_complete(fake, pool=NODE):
    sl = fake.pool_slices(pool)
    (gen, count), = gens(fake, pool)
    assert len(sl) == count
    idx = sorted(int(o["metadata"]["name"].split("-")[0], 16) for o in sl)
    assert idx == list(range(count))
    return gen


async def test_start_publish_and_idle():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(200))])
    assert fake.calls["create"] == 2
    sl = fake.pool_slices(NODE)
    assert sl[0]["metadata"]["name"].startswith(f"00000-{DRIVER}-{NODE}-")
    assert sl[1]["metadata"]["name"].startswith(f"00001-{DRIVER}-{NODE}-")
    assert sl[0]["metadata"]["ownerReferences"][0]["uid"] == fake.nodes[NODE]
    assert assert_complete(fake) == 1
    w = fake.writes()
    await run(c, [Pool(devices=devs(200))])
    await asyncio.sleep(0.2)
    assert fake.writes() == w  # nothing changed, nothing written
    await c.stop()
    assert len(fake.objects) == 2  # plain stop keeps slices


async def test_single_slice_change_keeps_generation():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(200))])
    d = devs(200)
    d[150] = Device("d-150", attributes={"i": 9999})
    await run(c, [Pool(devices=d)])
    assert fake.calls["update"] == 1 and assert_complete(fake) == 1
    d[0] = Device("d-000", attributes={"i": 9999})
    d[199] = Device("d-199", attributes={"i": 9999})
    await run(c, [Pool(devices=d)])  # two slices changed → bump, update all
    assert assert_complete(fake) == 2 and fake.calls["update"] == 3
    await run(c, [Pool(devices=d[:100])])  # 2 → 1: delete one, one update call: kept (Go)
    assert assert_complete(fake) == 2 and len(fake.pool_slices(NODE)) == 1
    await c.stop()


async def test_generation_never_lowered_and_taint_time_kept():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=[Device("a", taints=[Taint("x.io/k", "v")])])])
    (s,) = fake.pool_slices(NODE)
    t0 = s["spec"]["devices"][0]["taints"][0]["timeAdded"]
    await run(c, [Pool(devices=[Device("a", attributes={"z": 1}, taints=[Taint("x.io/k", "v")])])])
    (s,) = fake.pool_slices(NODE)
    assert s["spec"]["devices"][0]["taints"][0]["timeAdded"] == t0
    assert s["spec"]["pool"]["generation"] == 1
    await c.stop()


async def test_drift_repair_deleted_by_someone_else():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(300))])
    victim = fake.pool_slices(NODE)[1]["metadata"]["name"]
    fake.external_delete(victim)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(fake.pool_slices(NODE)) == 3:
            break
    await c.wait_synced(2)
    assert assert_complete(fake) == 2  # a new slice → generation bump
    await c.stop()


async def test_external_modification_is_reverted():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(3))])
    (s,) = fake.pool_slices(NODE)
    s = dict(s)
    s["spec"] = dict(s["spec"], devices=[])
    await fake.update_slice(s)
    await asyncio.sleep(0.2)
    await c.wait_synced(2)
    (s,) = fake.pool_slices(NODE)
    assert len(s["spec"]["devices"]) == 3
    await c.stop()


async def test_crash_mid_resplit_converges():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(130))])
    await c.stop()
    # Simulate a crashed re-split: the new generation has only one of its three slices, and a
    # stray slice with a bad name and an out-of-range index exist too.
    new = devs(300)
    await fake.create_slice({"metadata": {"generateName": f"00000-{DRIVER}-{NODE}-", "ownerReferences": []},
                             "spec": {"driver": DRIVER, "nodeName": NODE, "pool": {"name": NODE, "generation": 2, "resourceSliceCount": 3},
                                      "devices": [{"name": "d-000"}]}})
    await fake.create_slice({"metadata": {"generateName": f"00007-{DRIVER}-{NODE}-"},
                             "spec": {"driver": DRIVER, "nodeName": NODE,
                                      "pool": {"name": NODE, "generation": 2, "resourceSliceCount": 3}}})
    await fake.create_slice({"metadata": {"generateName": f"{DRIVER}-"},
                             "spec": {"driver": DRIVER, "nodeName": NODE,
                                      "pool": {"name": NODE, "generation": 2, "resourceSliceCount": 3}}})
    c2 = ctrl(fake)
    await c2.start()
    await run(c2, [Pool(devices=new)])
    gen = assert_complete(fake)
    assert gen == 3
    names = sorted(d["name"] for o in fake.pool_slices(NODE) for d in o["spec"].get("devices", []))
    assert names == [d.name for d in new]
    await c2.stop()


async def test_removed_pool_deleted_and_uninstall():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(2)), Pool(name="extra", devices=devs(1, "e"))])
    assert len(fake.objects) == 2
    await run(c, [Pool(devices=devs(2))])
    assert [o["spec"]["pool"]["name"] for o in fake.objects.values()] == [NODE]
    await c.stop(delete=True)
    assert fake.objects == {}


async def test_other_nodes_and_drivers_untouched():
    fake = FakeKube(nodes={NODE: "u1", "node-2": "u2"})
    other = SliceController(None, DRIVER, "node-2", api=fake, debounce_seconds=0.01)
    other_drv = SliceController(None, "other.example.com", NODE, api=fake, debounce_seconds=0.01)
    for o in (other, other_drv):
        await o.start()
        await run(o, [Pool(devices=devs(1))])
    c = ctrl(fake)
    await c.start()
    await run(c, [])
    assert len(fake.objects) == 2
    await c.stop(delete=True)
    assert len(fake.objects) == 2
    for o in (other, other_drv):
        await o.stop()


async def test_cluster_pool_scope():
    fake = FakeKube(nodes={NODE: "u1", "node-2": "u2"})
    sel = NodeSelection(node_local=False, all_nodes=True)
    a = ctrl(fake)
    await a.start()
    await run(a, [Pool(name="shared-a", devices=devs(1), selection=sel)])
    b = SliceController(None, DRIVER, "node-2", api=fake, debounce_seconds=0.01)
    await b.start()
    await run(b, [])  # must not delete node-1's cluster pool
    assert len(fake.objects) == 1
    (s,) = fake.objects.values()
    assert s["spec"]["allNodes"] is True and "nodeName" not in s["spec"]
    await a.stop(delete=True)
    await b.stop()
    assert fake.objects == {}


async def test_debounce_burst_of_taints():
    fake = FakeKube()
    c = ctrl(fake, debounce_seconds=0.1, max_debounce_seconds=1.0, taints_possible=True)
    await c.start()
    base = devs(64)
    await run(c, [Pool(devices=base)])
    w = fake.writes()
    for i in range(64):
        d = list(base)
        for j in range(i + 1):
            d[j] = Device(d[j].name, attributes={"i": j}, taints=[Taint("x.io/unhealthy", effect="NoSchedule")])
        c.update([Pool(devices=d)])
        await asyncio.sleep(0.001)
    await c.wait_synced(5)
    assert fake.writes() - w <= 2
    assert all(d.get("taints") for d in fake.pool_slices(NODE)[0]["spec"]["devices"])
    await c.stop()


async def test_dropped_fields_reported_once_no_loop():
    fake = FakeKube(drop_fields={"taints"})
    reports = []
    c = ctrl(fake, on_report=reports.append)
    await c.start()
    await run(c, [Pool(devices=[Device("a", taints=[Taint("x.io/k")])])])
    await asyncio.sleep(0.2)
    w = fake.writes()
    c.update([Pool(devices=[Device("a", taints=[Taint("x.io/k")])])])
    await c.wait_synced(2)
    await asyncio.sleep(0.2)
    assert fake.writes() == w == 1
    assert reports[-1].dropped_fields == {NODE: {"devices[].taints"}}
    assert sum(1 for r in reports if r.dropped_fields) == 1
    await c.stop()


async def test_conflict_retries():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(1))])
    fake.fail_next = [api_error(409, "conflict")]
    await run(c, [Pool(devices=devs(2))])
    (s,) = fake.pool_slices(NODE)
    assert len(s["spec"]["devices"]) == 2
    await c.stop()


async def test_server_errors_reported_and_retried():
    fake = FakeKube()
    reports = []
    c = ctrl(fake, on_report=reports.append)
    await c.start()
    fake.fail_next = [api_error(500, "boom")]
    await run(c, [Pool(devices=devs(1))])
    assert any(i.field == "server" for r in reports for i in r.issues)
    assert reports[-1].ok and len(fake.objects) == 1
    await c.stop()


async def test_invalid_devices_reported():
    fake = FakeKube()
    reports = []
    c = ctrl(fake, on_report=reports.append)
    await c.start()
    await run(c, [Pool(devices=[Device("good"), Device("Bad")])])
    assert reports[-1].invalid_devices == {NODE: {"Bad"}}
    (s,) = fake.objects.values()
    assert [d["name"] for d in s["spec"]["devices"]] == ["good"]
    await c.stop()


async def test_no_v1_fails_clearly():
    c = ctrl(FakeKube(minor=33, served=("v1beta1",)))
    with pytest.raises(UnsupportedServerError, match="1.34"):
        await c.start()


async def test_missing_node_fails_clearly():
    c = SliceController(None, DRIVER, "ghost", api=FakeKube())
    with pytest.raises(NodeNotFoundError, match="ghost"):
        await c.start()


async def test_counter_pool_published():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    sets = [CounterSet(f"gpu-{i}-cs", {"mem": "80Gi"}) for i in range(10)]
    d = [Device(f"gpu-{i}-mig-{k}", consumes_counters=[CounterConsumption(f"gpu-{i}-cs", {"mem": "10Gi"})])
         for i in range(10) for k in range(8)]
    await run(c, [Pool(devices=d, counter_sets=sets)])
    sl = fake.pool_slices(NODE)
    assert [len(s["spec"].get("sharedCounters", [])) for s in sl] == [8, 2, 0, 0]
    assert [len(s["spec"].get("devices", [])) for s in sl] == [0, 0, 64, 16]
    await c.stop()


def test_normalize_and_dropped_paths():
    a = {"pool": {"name": "p", "generation": 1, "resourceSliceCount": 1},
         "devices": [{"name": "a", "capacity": {"m": {"value": "1Gi"}}, "taints": [{"key": "k", "effect": "NoSchedule"}],
                      "attributes": {"b": {"bool": False}}}]}
    b = {"pool": {"name": "p", "generation": 1, "resourceSliceCount": 1},
         "devices": [{"name": "a", "capacity": {"m": {"value": "1073741824"}},
                      "taints": [{"key": "k", "effect": "NoSchedule", "timeAdded": "x"}], "attributes": {"b": {"bool": False}}}],
         "futureField": 1}
    assert normalize_spec(a) == normalize_spec(b)
    c = {**b, "devices": [{"name": "a", "capacity": {"m": {"value": "1Gi"}}, "attributes": {"b": {"bool": False}}}]}
    assert dropped_paths(a, c) == {"devices[].taints"}


async def test_restart_adopts_existing_slices_without_writes():
    fake = FakeKube()
    c = ctrl(fake)
    await c.start()
    await run(c, [Pool(devices=devs(300, taints=[Taint("x.io/k")]))])
    await c.stop()
    w = fake.writes()
    c2 = ctrl(fake)
    await c2.start()
    await run(c2, [Pool(devices=devs(300, taints=[Taint("x.io/k")]))])
    await asyncio.sleep(0.1)
    assert fake.writes() == w
    await c2.stop()


async def test_update_before_start_and_bad_input_reported():
    fake = FakeKube()
    reports = []
    c = ctrl(fake, on_report=reports.append)
    c.update([Pool(devices=devs(1))])
    await c.start()
    await c.wait_synced(5)
    assert len(fake.objects) == 1
    c.update(object())
    with pytest.raises(asyncio.TimeoutError):
        await c.wait_synced(0.3)
    assert reports[-1].errors and reports[-1].errors[0].field == "inventory"
    assert len(fake.objects) == 1  # nothing deleted on bad input
    await c.stop()

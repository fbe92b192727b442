"""Discovery on the sample DGX H100 host and on the A100/H200 presets, with real MIG tables."""
from __future__ import annotations

import json

import pytest

from dra_framework.errors import ConfigError
from dra_framework.model import Version

from dra_backends.nvidia import naming
from dra_backends.nvidia.fake import FakeNvml, PRESETS
from dra_backends.nvidia.mig_tables import MODELS
from dra_backends.nvidia.nvml_api import NvmlError

from nvidia_helpers import SAMPLE_HOST, make_driver, preset_host

DGX_H100_BUSES = ["0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0",
                  "0000:9d:00.0", "0000:c3:00.0", "0000:d1:00.0", "0000:df:00.0"]


def test_entry_point_registered(registry):
    assert "nvidia" in registry.types
    assert registry.types["nvidia"].plugin == "nvidia"


def test_sample_host_json_matches_preset():
    assert json.loads((SAMPLE_HOST / "nvml.json").read_text()) == PRESETS["dgx-h100"]


async def test_full_gpus_on_sample_host(driver_factory, host):
    drv = driver_factory(host)
    pool = await drv.discover()
    assert [d.name for d in pool.devices] == [naming.gpu_name(b) for b in DGX_H100_BUSES]
    assert pool.counter_sets == []
    d = pool.devices[0]
    a = d.attributes
    assert d.name == "gpu-0000-1b-00-0"
    assert a["type"] == "gpu" and a["uuid"] == PRESETS["dgx-h100"]["gpus"][0]["uuid"]
    assert a["productName"] == "NVIDIA H100 80GB HBM3"
    assert a["brand"] == "Nvidia" and a["architecture"] == "Hopper"
    assert a["cudaComputeCapability"] == Version("9.0.0")
    assert a["driverVersion"] == Version("550.54.15")
    assert a["cudaDriverVersion"] == Version("12.4.0")
    assert a["resource.kubernetes.io/pciBusID"] == "0000:1b:00.0"
    assert a["resource.kubernetes.io/pcieRoot"] == "pci0000:15"
    assert a["resource.kubernetes.io/numaNode"] == 0
    assert pool.devices[7].attributes["resource.kubernetes.io/numaNode"] == 1
    assert d.capacity["memory"].value == 81920 << 20
    assert len(a) + len(d.capacity) <= 32


async def test_names_stable_when_gpu_falls_off_the_bus(driver_factory, host):
    drv = driver_factory(host)
    before = [d.name for d in (await drv.discover()).devices]
    drv.backend.nvml.lose_gpu(PRESETS["dgx-h100"]["gpus"][2]["uuid"])
    after = [d.name for d in (await drv.discover()).devices]
    assert after == [n for n in before if n != "gpu-0000-52-00-0"]


def _expected_mig_names(bus: str, model_key: str) -> list[str]:
    return [naming.mig_name(bus, p.name, p.id, start)
            for p in MODELS[model_key].profiles for start, _ in p.placements]


@pytest.mark.parametrize("preset,model", [("dgx-h100", "H100-SXM5-80GB"), ("dgx-a100", "A100-SXM4-40GB"),
                                          ("dgx-h200", "H200-SXM5-141GB")])
async def test_dynamic_mig_devices_follow_real_tables(driver_factory, tmp_path, preset, model):
    drv = driver_factory(preset_host(tmp_path, preset), migStrategy="dynamic")
    pool = await drv.discover()
    assert len(pool.counter_sets) == 8
    per_gpu = 1 + sum(len(p.placements) for p in MODELS[model].profiles)
    assert len(pool.devices) == 8 * per_gpu
    bus = PRESETS[preset]["gpus"][0]["pciBusId"]
    names = [d.name for d in pool.devices if d.name.startswith(naming.gpu_name(bus) + "-mig-")]
    assert sorted(names) == sorted(_expected_mig_names(bus, model))


async def test_h100_profile_ids_and_placements(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    g = "gpu-0000-1b-00-0"
    names = {d.name for d in pool.devices if d.name.startswith(g)}
    expected = {g} | {f"{g}-mig-1g10gb-19-{i}" for i in range(7)} | {f"{g}-mig-1g10gb-me-20-{i}" for i in range(7)} \
        | {f"{g}-mig-1g20gb-15-{i}" for i in (0, 2, 4, 6)} | {f"{g}-mig-2g20gb-14-{i}" for i in (0, 2, 4)} \
        | {f"{g}-mig-3g40gb-9-{i}" for i in (0, 4)} | {f"{g}-mig-4g40gb-5-0", f"{g}-mig-7g80gb-0-0"}
    assert names == expected
    d = drv.device(pool, f"{g}-mig-3g40gb-9-4")
    assert d.attributes["type"] == "mig" and d.attributes["profile"] == "3g.40gb"
    assert "uuid" not in d.attributes  # dynamic MIG devices have no UUID until created
    assert d.capacity["multiprocessors"].value == 48
    assert d.capacity["memory"].value == 40960 << 20
    assert d.consumes_counters[0].counters["memory-slice-4"] == 1
    assert "memory-slice-3" not in d.consumes_counters[0].counters


async def test_a100_golden_counters(driver_factory, tmp_path):
    """The A100 MIG profiles of https://docs.nvidia.com/datacenter/tesla/mig-user-guide/ as
    counters (zero-valued counters are omitted)."""
    drv = driver_factory(preset_host(tmp_path, "dgx-a100"), migStrategy="dynamic")
    pool = await drv.discover()
    cs = pool.counter_sets[0]
    assert cs.name == "gpu-0000-07-00-0-counters"
    assert cs.counters == {"multiprocessors": 98, "copy-engines": 7, "decoders": 5, "jpeg-engines": 1,
                           "ofa-engines": 1, "memory": 42144366592, **{f"memory-slice-{i}": 1 for i in range(8)}}
    d = drv.device(pool, "gpu-0000-07-00-0-mig-1g5gb-19-0")
    assert d.consumes_counters[0].counters == {"multiprocessors": 14, "copy-engines": 1, "memory": 5100273664,
                                               "memory-slice-0": 1}
    seven = drv.device(pool, "gpu-0000-07-00-0-mig-7g40gb-0-0")
    assert all(seven.consumes_counters[0].counters[f"memory-slice-{i}"] == 1 for i in range(8))


def _feasible_sets(model_key: str):
    """Every set of GPU instances the (real-table) fake accepts, by depth-first search."""
    model = MODELS[model_key]
    spec = {"gpus": [{"model": model_key, "uuid": "GPU-x", "minor": 0, "pciBusId": "0000:01:00.0",
                      "migEnabled": True}]}
    fake = FakeNvml(spec)
    options = [(p, s) for p in model.profiles for s, _ in p.placements]
    out = []

    def dfs(i: int, chosen: list):
        out.append(list(chosen))
        for j in range(i, len(options)):
            p, s = options[j]
            try:
                gi = fake.create_gpu_instance("GPU-x", p.id, s)
            except NvmlError:
                continue
            chosen.append(options[j])
            dfs(j + 1, chosen)
            chosen.pop()
            fake.destroy_gpu_instance("GPU-x", gi.id)

    dfs(0, [])
    return out


@pytest.mark.parametrize("preset,model", [("dgx-h100", "H100-SXM5-80GB"), ("dgx-a100", "A100-SXM4-40GB"),
                                          ("dgx-h200", "H200-SXM5-141GB")])
async def test_counters_consistent(driver_factory, tmp_path, preset, model):
    drv = driver_factory(preset_host(tmp_path, preset), migStrategy="dynamic")
    pool = await drv.discover()
    sets = {c.name: c.counters for c in pool.counter_sets}
    by_name = {d.name: d for d in pool.devices}
    for d in pool.devices:
        (cc,) = d.consumes_counters
        total = sets[cc.counter_set]
        assert set(cc.counters) <= set(total), d.name
        assert all(0 < v <= total[k] for k, v in cc.counters.items()), d.name
        if d.attributes["type"] == "gpu":
            assert cc.counters == total  # the full GPU consumes everything
    # every combination real hardware accepts must fit in the counter set
    bus = PRESETS[preset]["gpus"][0]["pciBusId"]
    total = sets[naming.counter_set_name(bus)]
    feasible = _feasible_sets(model)
    assert len(feasible) > 50
    for combo in feasible:
        used: dict[str, int] = {}
        for p, start in combo:
            for k, v in by_name[naming.mig_name(bus, p.name, p.id, start)].consumes_counters[0].counters.items():
                used[k] = used.get(k, 0) + v
        assert all(v <= total[k] for k, v in used.items()), (combo, used)


async def test_static_mig_devices(driver_factory, tmp_path):
    root = preset_host(tmp_path, "dgx-h100", gpus={0: {"migEnabled": True, "migInstances": [
        {"profileId": 19, "start": 0}, {"profileId": 9, "start": 4}]}})
    drv = driver_factory(root, migStrategy="static")
    pool = await drv.discover()
    names = [d.name for d in pool.devices]
    assert "gpu-0000-1b-00-0" not in names  # MIG enabled: the full GPU is not usable
    mig = drv.device(pool, "gpu-0000-1b-00-0-mig-1g10gb-19-0")
    assert mig.attributes["uuid"].startswith("MIG-")
    assert mig.attributes["parentUUID"] == PRESETS["dgx-h100"]["gpus"][0]["uuid"]
    assert mig.data["giId"] == 7 and mig.data["ciId"] == 0
    assert drv.device(pool, "gpu-0000-1b-00-0-mig-3g40gb-9-4").data["giId"] == 2
    assert len(names) == 7 + 2


def test_bad_option_names_the_field(registry, tmp_path, host):
    with pytest.raises(ConfigError, match=r"drivers\[0\]\.backends\[0\]\.options\.migStrategy"):
        make_driver(registry, tmp_path, host, migStrategy="sometimes")
    with pytest.raises(ConfigError, match="nvml"):
        make_driver(registry, tmp_path, host, nvml="fake:/nonexistent.json")


def test_real_nvml_needs_library_under_driver_root(registry, tmp_path, host):
    empty = tmp_path / "empty-root"
    empty.mkdir()
    with pytest.raises(ConfigError, match="libnvidia-ml.so.1 not found"):
        make_driver(registry, tmp_path, host, nvml="real", driverRoot=str(empty))
    # the sample host's libnvidia-ml.so.1 is a text file: pynvml really tries to load it and fails
    with pytest.raises(ConfigError, match="NVML init failed"):
        make_driver(registry, tmp_path, host, nvml="real")

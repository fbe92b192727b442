"""Prepare/unprepare through the hooks: full GPUs, time-slicing refcounts, dynamic MIG with
rollback from the journal alone, and the start-up reconcile policies."""
from __future__ import annotations

import json

import pytest

from dra_backends.nvidia import nvml_api as api
from dra_backends.nvidia.config import GpuConfig, MigDeviceConfig
from dra_backends.nvidia.fake import PRESETS

from nvidia_helpers import Claim, allocated, preset_host

H100 = PRESETS["dgx-h100"]["gpus"]
GPU0, GPU1 = H100[0]["uuid"], H100[1]["uuid"]
MIG_1G = "gpu-0000-1b-00-0-mig-1g10gb-19-0"


def ts(interval: str) -> GpuConfig:
    return GpuConfig.model_validate({"sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": interval}}})


async def test_prepare_full_gpu_edits_and_timeslice(driver_factory, host):
    drv = driver_factory(host)
    pool = await drv.discover()
    claim = Claim(drv, "uid-1", [allocated(drv.device(pool, "gpu-0000-43-00-0"), configs=[ts("Long")])])
    result = await claim.prepare()
    edits = result.devices["gpu-0000-43-00-0"].edits
    assert [n.path for n in edits.device_nodes] == ["/dev/nvidia1"]
    common = result.claim_edits
    assert common.env == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert [n.path for n in common.device_nodes] == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                                      "/dev/nvidia-modeset"]
    mounts = {m.container_path: m for m in common.mounts}
    libcuda = mounts["/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"]
    assert libcuda.host_path == "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"  # hostDriverRoot "/"
    assert "ro" in libcuda.options
    assert "/usr/lib/x86_64-linux-gnu/libcuda.so.1" in mounts and "/usr/bin/nvidia-smi" in mounts
    assert "/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin" in mounts
    assert claim.journal == {f"timeslice/{GPU1}": "Long"}
    assert drv.backend.executor.commands == [["nvidia-smi", "compute-policy", "-i", GPU1, "--set-timeslice", "3"]]
    assert result.devices["gpu-0000-43-00-0"].status.data == {"uuid": GPU1}
    await claim.unprepare()
    assert drv.backend.executor.commands[-1] == ["nvidia-smi", "compute-policy", "-i", GPU1, "--set-timeslice", "0"]
    # a second unprepare (kubelet retry) changes nothing more
    await claim.unprepare()
    assert len(drv.backend.executor.commands) == 2


async def test_host_driver_root_rewrites_mounts_and_hooks(driver_factory, host):
    (host / "usr/local/bin").mkdir(parents=True, exist_ok=True)  # a host with the hook installed
    (host / "usr/local/bin/nvidia-cdi-hook").touch(mode=0o755)
    (host / "run/nvidia/driver").mkdir(parents=True, exist_ok=True)  # the driver container's root
    drv = driver_factory(host, hostDriverRoot="/run/nvidia/driver", nvidiaCdiHookPath="/usr/local/bin/nvidia-cdi-hook")
    pool = await drv.discover()
    result = await Claim(drv, "u", [allocated(pool.devices[0])]).prepare()
    mounts = {m.container_path: m.host_path for m in result.claim_edits.mounts}
    assert mounts["/usr/bin/nvidia-smi"] == "/run/nvidia/driver/usr/bin/nvidia-smi"
    assert "/usr/lib/x86_64-linux-gnu/libcuda.so.1" not in mounts  # the hook creates the symlink
    hooks = [h.args[1] for h in result.claim_edits.hooks]
    assert hooks == ["create-symlinks", "update-ldcache"]
    assert "libcuda.so.550.54.15::/usr/lib/x86_64-linux-gnu/libcuda.so.1" in result.claim_edits.hooks[0].args


async def test_missing_device_node_fails_prepare(driver_factory, host):
    drv = driver_factory(host)
    pool = await drv.discover()
    (host / "dev/nvidia3").unlink()
    with pytest.raises(RuntimeError, match="/dev/nvidia3 not found"):
        await Claim(drv, "u", [allocated(drv.device(pool, "gpu-0000-61-00-0"))]).prepare()


async def test_timeslice_reset_only_when_last_claim_leaves(driver_factory, host):
    drv = driver_factory(host)
    pool = await drv.discover()
    dev = drv.device(pool, "gpu-0000-1b-00-0")
    a = Claim(drv, "a", [allocated(dev, configs=[ts("Short")])])
    b = Claim(drv, "b", [allocated(dev, configs=[ts("Short")])])
    await a.prepare()
    await b.prepare()
    cmds = drv.backend.executor.commands
    assert len(cmds) == 2
    await a.unprepare()
    assert len(cmds) == 2  # b still uses the setting
    assert drv.backend.sharing.holders(GPU0) == {"b": "Short"}
    await b.unprepare()
    assert cmds[-1][-1] == "0" and drv.backend.sharing.holders(GPU0) == {}


async def test_executor_failure_is_rolled_back_from_journal(driver_factory, host):
    drv = driver_factory(host)
    pool = await drv.discover()
    drv.backend.executor.fail["--set-timeslice 2"] = "Insufficient Permissions"
    claim = Claim(drv, "c", [allocated(pool.devices[0], configs=[ts("Medium")])])
    with pytest.raises(RuntimeError, match="Insufficient Permissions"):
        await claim.prepare()
    assert claim.journal == {f"timeslice/{GPU0}": "Medium"}
    await drv.hooks.call("dra_unprepare", stored=claim.stored())
    assert drv.backend.executor.commands[-1][-1] == "0"
    assert drv.backend.sharing.holders(GPU0) == {}


async def test_dynamic_mig_1g10gb_prepare_unprepare(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    fake = drv.backend.nvml
    claim = Claim(drv, "m", [allocated(drv.device(pool, MIG_1G), request="mig", configs=[MigDeviceConfig()])])
    result = await claim.prepare()
    rec = claim.partitions[MIG_1G]
    assert rec["step"] == "ready" and rec["giId"] == 7 and rec["ciId"] == 0 and rec["uuid"].startswith("MIG-")
    assert rec["enabledMig"] is True
    assert claim.journal[f"mig/{MIG_1G}"] == rec
    gis = fake.gpu_instances(GPU0)
    assert [(g.id, g.profile_id, g.start, g.size) for g in gis] == [(7, 19, 0, 1)]
    nodes = [n.path for n in result.devices[MIG_1G].edits.device_nodes]
    # minors from /proc/driver/nvidia-caps/mig-minors: gpu0/gi7/access 66, gpu0/gi7/ci0/access 67
    assert nodes == ["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap66", "/dev/nvidia-caps/nvidia-cap67"]
    assert result.devices[MIG_1G].status.data["uuid"] == rec["uuid"]
    await claim.unprepare()
    assert not fake.system().gpus[0].mig_enabled  # last instance gone: MIG mode off again (Hopper)
    await claim.unprepare()  # idempotent


async def test_mig_caps_read_from_access_files(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    access = host / "proc/driver/nvidia/capabilities/gpu0/mig/gi7"
    (access / "ci0").mkdir(parents=True)
    (access / "access").write_text("DeviceFileMinor: 1066\nDeviceFileMode: 292\n")
    (access / "ci0/access").write_text("DeviceFileMinor: 1067\nDeviceFileMode: 292\n")
    result = await Claim(drv, "m", [allocated(drv.device(pool, MIG_1G))]).prepare()
    assert [n.path for n in result.devices[MIG_1G].edits.device_nodes][1:] == [
        "/dev/nvidia-caps/nvidia-cap1066", "/dev/nvidia-caps/nvidia-cap1067"]


async def test_two_partitions_one_gpu_and_overlap_error(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    a = Claim(drv, "a", [allocated(drv.device(pool, "gpu-0000-1b-00-0-mig-3g40gb-9-0"))])
    await a.prepare()
    b = Claim(drv, "b", [allocated(drv.device(pool, "gpu-0000-1b-00-0-mig-1g10gb-19-5"))])
    await b.prepare()
    # an overlapping placement (as after a double allocation) fails with NVML's error, no side effect
    c = Claim(drv, "c", [allocated(drv.device(pool, "gpu-0000-1b-00-0-mig-2g20gb-14-2"))])
    with pytest.raises(RuntimeError, match="Insufficient Resources"):
        await c.prepare()
    assert c.journal["mig/gpu-0000-1b-00-0-mig-2g20gb-14-2"]["step"] == "failed"
    await drv.hooks.call("dra_unprepare", stored=c.stored())  # rollback touches nothing
    assert len(drv.backend.nvml.gpu_instances(GPU0)) == 2
    await a.unprepare()
    assert drv.backend.nvml.system().gpus[0].mig_enabled  # b's instance still there
    await b.unprepare()
    assert not drv.backend.nvml.system().gpus[0].mig_enabled


async def test_full_gpu_prepare_turns_mig_off_or_refuses(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    fake = drv.backend.nvml
    fake.set_mig_mode(GPU0, True)
    await Claim(drv, "g", [allocated(drv.device(pool, "gpu-0000-1b-00-0"))]).prepare()
    assert not fake.system().gpus[0].mig_enabled
    fake.set_mig_mode(GPU0, True)
    fake.create_gpu_instance(GPU0, 19, 3)
    with pytest.raises(RuntimeError, match="still has MIG instances"):
        await Claim(drv, "h", [allocated(drv.device(pool, "gpu-0000-1b-00-0"))]).prepare()


async def test_rollback_after_ci_failure_from_journal_alone(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    drv.backend.nvml.fail_next("create_compute_instance", api.ERROR_UNKNOWN)
    claim = Claim(drv, "p", [allocated(drv.device(pool, MIG_1G))])
    with pytest.raises(RuntimeError, match="error creating compute instance"):
        await claim.prepare()
    assert claim.partitions == {}  # create_partition never returned
    entry = claim.pending[MIG_1G][f"mig/{MIG_1G}"]
    assert entry["step"] == "gi-created" and entry["giId"] == 7 and entry["parent"] == GPU0
    assert len(drv.backend.nvml.gpu_instances(GPU0)) == 1
    # "restart": a new backend instance on the same state (fake NVML state persisted); the
    # framework hands the pending partition (what the create journaled) to dra_destroy_partition
    drv2 = driver_factory(host, migStrategy="dynamic")
    await drv2.discover()
    await claim.unprepare(drv2)
    assert drv2.backend.nvml.snapshot()[GPU0]["gis"] == {}


async def test_rollback_when_crash_hit_between_create_and_journal_update(driver_factory, host):
    """The journal says 'creating' (recorded before the call); the GI exists: it is ours."""
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    claim = Claim(drv, "p", [allocated(drv.device(pool, MIG_1G))])
    data = drv.device(pool, MIG_1G).data
    claim.journal[f"mig/{MIG_1G}"] = {"device": MIG_1G, "parent": GPU0, "bus": data["bus"], "parentMinor": 0,
                                      "profile": "1g.10gb", "profileId": 19, "start": 0, "size": 1, "step": "creating"}
    fake = drv.backend.nvml
    fake.set_mig_mode(GPU0, True)
    fake.create_gpu_instance(GPU0, 19, 0)
    # kubelet retries the prepare: the earlier attempt's instance is reused, not refused
    result = await claim.prepare()
    assert claim.partitions[MIG_1G]["giId"] == 7 and MIG_1G in result.devices
    claim.completed = False  # say the driver died before PrepareCompleted
    await claim.unprepare()
    assert fake.snapshot()[GPU0]["gis"] == {}


async def test_destroy_in_use_raises_for_retry(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    claim = Claim(drv, "busy", [allocated(drv.device(pool, MIG_1G))])
    await claim.prepare()
    drv.backend.nvml.attach_process(GPU0, 7)
    with pytest.raises(RuntimeError, match="In use by another client"):
        await claim.unprepare()
    drv.backend.nvml.detach_process(GPU0, 7)
    await claim.unprepare()
    assert drv.backend.nvml.snapshot()[GPU0]["gis"] == {}


def _host_with_leftovers(tmp_path):
    return preset_host(tmp_path, "dgx-h100", gpus={1: {"migEnabled": True, "migInstances": [
        {"profileId": 19, "start": 0}, {"profileId": 14, "start": 4}]}})


async def test_reconcile_destroy(driver_factory, tmp_path):
    drv = driver_factory(_host_with_leftovers(tmp_path), migStrategy="dynamic", unownedMigPolicy="destroy")
    await drv.hooks.call("dra_reconcile_partitions", owned=[])
    assert drv.backend.nvml.snapshot()[GPU1]["gis"] == {}
    pool = await drv.discover()
    assert all(not d.taints for d in pool.devices)


async def test_reconcile_keeps_owned_instances(driver_factory, tmp_path):
    drv = driver_factory(_host_with_leftovers(tmp_path), migStrategy="dynamic")
    owned = [{"device": "gpu-0000-43-00-0-mig-2g20gb-14-4", "parent": GPU1, "profileId": 14, "start": 4, "giId": 5,
              "step": "ready"}]
    await drv.hooks.call("dra_reconcile_partitions", owned=owned)
    assert sorted(drv.backend.nvml.snapshot()[GPU1]["gis"]) == [5]


async def test_reconcile_adopt_publishes_instances(driver_factory, tmp_path):
    drv = driver_factory(_host_with_leftovers(tmp_path), migStrategy="dynamic", unownedMigPolicy="adopt")
    await drv.hooks.call("dra_reconcile_partitions", owned=[])
    pool = await drv.discover()
    names = {d.name for d in pool.devices if d.name.startswith("gpu-0000-43-00-0")}
    assert "gpu-0000-43-00-0" not in names  # the full GPU cannot be allocated while instances exist
    adopted = next(d for d in pool.devices if d.name == "gpu-0000-43-00-0-mig-1g10gb-19-0")
    assert adopted.attributes["uuid"].startswith("MIG-")
    assert "gpu-0000-43-00-0-mig-1g20gb-15-0" not in names  # overlaps the adopted 1g at slice 0
    assert "gpu-0000-43-00-0-mig-1g10gb-19-1" in names
    # preparing an adopted device creates nothing and unpreparing destroys nothing
    claim = Claim(drv, "a", [allocated(adopted)])
    await claim.prepare()
    assert claim.partitions[adopted.name]["adopted"] is True
    await claim.unprepare()
    assert len(drv.backend.nvml.snapshot()[GPU1]["gis"]) == 2


async def test_reconcile_refuse_taints_gpu_without_raising(driver_factory, tmp_path):
    drv = driver_factory(_host_with_leftovers(tmp_path), migStrategy="dynamic", unownedMigPolicy="refuse")
    await drv.hooks.call("dra_reconcile_partitions", owned=[])
    pool = await drv.discover()
    tainted = {d.name for d in pool.devices if d.taints}
    assert tainted and all(n.startswith("gpu-0000-43-00-0") for n in tainted)
    assert {t.key for d in pool.devices for t in d.taints} == {"gpu.nvidia.com/unmanaged-mig"}
    assert len(drv.backend.nvml.snapshot()[GPU1]["gis"]) == 2


async def test_reconcile_destroy_failure_degrades_to_taint(driver_factory, tmp_path):
    drv = driver_factory(_host_with_leftovers(tmp_path), migStrategy="dynamic")
    drv.backend.nvml.attach_process(GPU1, 7)
    await drv.hooks.call("dra_reconcile_partitions", owned=[])  # must not raise
    pool = await drv.discover()
    assert any(d.taints for d in pool.devices if d.name.startswith("gpu-0000-43-00-0"))


async def test_unprepare_after_reboot_touches_no_hardware(driver_factory, host):
    drv = driver_factory(host)
    pool = await drv.discover()
    claim = Claim(drv, "r", [allocated(pool.devices[0], configs=[ts("Long")])])
    await claim.prepare()
    n = len(drv.backend.executor.commands)
    await drv.hooks.call("dra_unprepare", stored=claim.stored(physically_prepared=False))
    assert len(drv.backend.executor.commands) == n
    assert drv.backend.sharing.holders(GPU0) == {}


def test_example_config_loads(registry, tmp_path):
    from pathlib import Path
    import os
    from dra_framework.composition import build_backends
    from dra_framework.config import load_settings
    repo = Path(__file__).resolve().parents[2]
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        s = load_settings(repo / "examples/configs/nvidia-dgx-h100.yaml", {"node_name": "n", "state_dir": str(tmp_path)})
        (b,) = build_backends(s, 0, s.drivers[0], registry)
        assert s.drivers[0].name == "gpu.nvidia.com" and b.hooks.instance.o.mig_strategy == "dynamic"
    finally:
        os.chdir(cwd)
    assert json.loads((repo / "examples/hosts/dgx-h100/nvml.json").read_text())["gpus"][0]["minor"] == 0


async def test_static_mig_prepare_uses_existing_instance(driver_factory, tmp_path):
    root = preset_host(tmp_path, "dgx-h100", gpus={3: {"migEnabled": True, "migInstances": [{"profileId": 14, "start": 2}]}})
    drv = driver_factory(root)  # migStrategy static
    pool = await drv.discover()
    dev = drv.device(pool, "gpu-0000-61-00-0-mig-2g20gb-14-2")
    claim = Claim(drv, "s", [allocated(dev)])
    result = await claim.prepare()
    assert claim.partitions == {} and claim.journal == {}
    # GI 4 (2-slice placement 2) on GPU minor 3: minors 3 + 3*135 + 4*9 = 444 and 445 (access files)
    assert [n.path for n in result.devices[dev.name].edits.device_nodes] == [
        "/dev/nvidia3", "/dev/nvidia-caps/nvidia-cap444", "/dev/nvidia-caps/nvidia-cap445"]
    assert result.devices[dev.name].status.data["uuid"] == dev.attributes["uuid"]
    await claim.unprepare()
    assert len(drv.backend.nvml.gpu_instances(H100[3]["uuid"])) == 1  # static: never destroyed


def test_driver_root_slash_maps_only_driver_files(tmp_path):
    from pathlib import Path
    from dra_backends.nvidia.cdi_edits import CdiBuilder
    from dra_backends.nvidia.fake import write_host_tree
    host = write_host_tree(tmp_path / "h", PRESETS["dgx-h100"])
    b = CdiBuilder(host, host, "/run/nvidia/driver", "/usr/local/bin/nvidia-cdi-hook")
    e = b.common("550.54.15")
    assert all(n.host_path is None for n in e.device_nodes)
    assert all(m.host_path.startswith("/run/nvidia/driver/") for m in e.mounts)
    assert e.hooks[0].path == "/usr/local/bin/nvidia-cdi-hook"
    assert Path(host).is_dir()


async def test_reconcile_treats_half_created_instance_as_owned(driver_factory, host):
    """A GI of an interrupted prepare is in `owned` as the framework's pending record (what the
    create journaled) and is left for the rollback, which destroys it from that record."""
    drv = driver_factory(host, migStrategy="dynamic", unownedMigPolicy="refuse")
    pool = await drv.discover()
    drv.backend.nvml.fail_next("create_compute_instance", api.ERROR_UNKNOWN)
    claim = Claim(drv, "p", [allocated(drv.device(pool, MIG_1G))])
    with pytest.raises(RuntimeError):
        await claim.prepare()
    drv2 = driver_factory(host, migStrategy="dynamic", unownedMigPolicy="refuse")
    await drv2.hooks.call("dra_reconcile_partitions", owned=claim.partition_records())
    pool2 = await drv2.discover()
    assert not any(d.taints for d in pool2.devices)
    await claim.unprepare(drv2)
    assert drv2.backend.nvml.snapshot()[GPU0]["gis"] == {}
    # after that, a leftover instance at the same placement is unowned again
    drv2.backend.nvml.set_mig_mode(GPU0, True)
    drv2.backend.nvml.create_gpu_instance(GPU0, 19, 0)
    await drv2.hooks.call("dra_reconcile_partitions", owned=[])
    assert GPU0 in drv2.backend.mig.refused


async def test_ready_instance_no_checkpoint_owns_is_unowned_after_lost_checkpoint(driver_factory, host):
    """A finished MIG instance whose claim record went with a lost checkpoint must not stay
    'owned' through the backend's in-flight list forever: the start-up policy applies to it."""
    drv = driver_factory(host, migStrategy="dynamic", unownedMigPolicy="destroy")
    pool = await drv.discover()
    claim = Claim(drv, "lost", [allocated(drv.device(pool, MIG_1G))])
    await claim.prepare()
    assert drv.backend.nvml.snapshot()[GPU0]["gis"] != {}
    drv2 = driver_factory(host, migStrategy="dynamic", unownedMigPolicy="destroy")
    await drv2.hooks.call("dra_reconcile_partitions", owned=[])   # the checkpoint knows nothing
    assert drv2.backend.nvml.snapshot()[GPU0]["gis"] == {}


async def test_recovered_claim_keeps_its_mig_instance_after_lost_checkpoint(driver_factory, host):
    """The checkpoint was lost but the claim's CDI spec names the MIG device: the framework passes
    a recovered pending record; the instance under the still running pod is owned, not torn down."""
    drv = driver_factory(host, migStrategy="dynamic", unownedMigPolicy="destroy")
    pool = await drv.discover()
    claim = Claim(drv, "kept", [allocated(drv.device(pool, MIG_1G))])
    await claim.prepare()
    drv2 = driver_factory(host, migStrategy="dynamic", unownedMigPolicy="destroy")
    recovered = {"device": MIG_1G, "pending": True, "journal": {}, "recovered": True}
    await drv2.hooks.call("dra_reconcile_partitions", owned=[recovered])
    assert drv2.backend.nvml.snapshot()[GPU0]["gis"] != {}
    await drv2.hooks.call("dra_destroy_partition", record=recovered)  # the claim's unprepare
    assert drv2.backend.nvml.snapshot()[GPU0]["gis"] == {}


async def test_rollback_turns_mig_mode_off_when_crash_hit_before_the_gi(driver_factory, host):
    """Killed after enabling MIG mode for the claim and before its GI existed: the rollback from
    the pending partition's journal turns MIG mode off again (the conformance suite's kill -9
    test found it left on)."""
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    claim = Claim(drv, "p", [allocated(drv.device(pool, MIG_1G))])
    data = drv.device(pool, MIG_1G).data
    entry = {"device": MIG_1G, "parent": GPU0, "bus": data["bus"], "parentMinor": 0, "profile": "1g.10gb",
             "profileId": 19, "start": 0, "size": 1, "step": "creating", "enabledMig": True}
    claim.journal[f"mig/{MIG_1G}"] = entry
    claim.pending[MIG_1G] = {f"mig/{MIG_1G}": entry}
    fake = drv.backend.nvml
    fake.set_mig_mode(GPU0, True)
    assert fake.snapshot()[GPU0]["mig"] is True
    drv2 = driver_factory(host, migStrategy="dynamic")  # the restarted daemon's backend
    await drv2.discover()
    await claim.unprepare(drv2)
    assert drv2.backend.nvml.snapshot()[GPU0] == {"mig": False, "gis": {}}

"""VFIO passthrough and consumable-share publishing through the hooks, on a copy of the sample
DGX H100 host with FakePciKernel playing the kernel for the sysfs rebinding writes."""
from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from dra_framework.testing import FakePciKernel

from dra_backends.nvidia.options import NvidiaOptions

from nvidia_helpers import Claim, allocated

BUS = "0000:1b:00.0"


class Killed(BaseException):
    """The process died here."""

VFIO = "vfio-0000-1b-00-0"
GPU = "gpu-0000-1b-00-0"


def driver_of(host, bdf: str) -> str | None:
    link = host / "sys/bus/pci/devices" / bdf / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


async def test_vfio_sibling_published_with_a_shared_counter(driver_factory, host):
    drv = driver_factory(host, migStrategy="none", passthrough=True, passthroughExclude=["0000:df:00.0"])
    pool = await drv.discover()
    v = drv.device(pool, VFIO)
    assert v.attributes["type"] == "vfio" and v.attributes["iommuGroup"] == 40
    assert v.attributes["resource.kubernetes.io/pciBusID"] == BUS and v.attributes["productName"].startswith("NVIDIA H100")
    g = drv.device(pool, GPU)
    assert g.consumes_counters == v.consumes_counters and v.consumes_counters[0].counters == {"gpu": 1}
    assert f"{GPU}-counters" in {cs.name for cs in pool.counter_sets}
    assert "vfio-0000-df-00-0" not in {d.name for d in pool.devices}  # excluded by the admin


async def test_vfio_prepare_rebinds_and_unprepare_restores(driver_factory, host):
    drv = driver_factory(host, migStrategy="none", passthrough=True)
    pool = await drv.discover()
    claim = Claim(drv, "uid-v", [allocated(drv.device(pool, VFIO), request="vm")])
    with FakePciKernel(host):
        res = await claim.prepare()
        assert driver_of(host, BUS) == "vfio-pci"
        nodes = {n.path: n for n in res.devices[VFIO].edits.device_nodes}
        assert set(nodes) == {"/dev/vfio/40", "/dev/vfio/vfio"}
        assert (nodes["/dev/vfio/vfio"].major, nodes["/dev/vfio/vfio"].minor) == (10, 196)
        assert nodes["/dev/vfio/40"].type == "c" and nodes["/dev/vfio/40"].major == 507
        assert res.claim_edits is None  # no CUDA driver files for a VM
        assert claim.journal[f"pci.rebind/{BUS}"]["step"] == "done"
        # NVML no longer sees the GPU: its NVIDIA device is gone, the vfio one stays
        names = {d.name for d in (await drv.discover()).devices}
        assert GPU not in names and VFIO in names
        # the NVIDIA device of the same GPU (a force-deleted pod's claim) is refused
        gpu_claim = Claim(drv, "uid-g", [allocated(drv.device(pool, GPU))])
        with pytest.raises(RuntimeError, match="bound to vfio-pci for claim uid-v"):
            await gpu_claim.prepare()
        await claim.unprepare()
        assert driver_of(host, BUS) == "nvidia"
        assert GPU in {d.name for d in (await drv.discover()).devices}


async def test_vfio_refuses_a_pinned_gpu(driver_factory, host):
    drv = driver_factory(host, migStrategy="none", passthrough=True)
    pool = await drv.discover()
    claim = Claim(drv, "uid-v", [allocated(drv.device(pool, VFIO), request="vm")])
    (host / "sys/bus/pci/devices" / BUS / "driver_override").write_text("nvidia\n")
    with pytest.raises(RuntimeError, match="not offered for passthrough: driver_override is 'nvidia'"):
        await claim.prepare()
    assert driver_of(host, BUS) == "nvidia" and claim.journal == {}
    assert VFIO not in {d.name for d in (await drv.discover()).devices}


async def test_vfio_rollback_from_every_journal_step(driver_factory, host):
    """A prepare that dies right after its n-th journal write (the checkpoint holds it, the
    sysfs write after it never happened) is undone from the journal alone. The real kill -9
    through the daemon is in tests/e2e/test_e2e_nvidia_kill.py."""
    drv = driver_factory(host, migStrategy="none", passthrough=True)
    pool = await drv.discover()
    n = 1
    while True:
        claim = Claim(drv, f"uid-{n}", [allocated(drv.device(pool, VFIO), request="vm")])
        original = claim.context

        def dying_context(original=original, limit=n):
            ctx = original()
            real, written = ctx.on_record, []

            async def record(key, value):
                await real(key, value)
                written.append(key)
                if len(written) >= limit:
                    raise Killed  # not an Exception: nothing in the backend catches it
            ctx.on_record = record
            return ctx
        claim.context = dying_context
        with FakePciKernel(host):
            try:
                await claim.prepare()
                done = True
            except Killed:
                done = False
            claim.completed = done
            await claim.unprepare()
            assert driver_of(host, BUS) == "nvidia", (n, claim.journal)
            override = (host / "sys/bus/pci/devices" / BUS / "driver_override").read_text().strip()
            assert override in ("", "(null)"), (n, override)
        if done:
            break
        n += 1
    assert n >= 5  # use/ + the kit's unbind, override, bind, clear, done steps


def test_option_combinations_are_refused_naming_the_option():
    with pytest.raises(ValidationError, match="consumableShares: not supported with migStrategy dynamic"):
        NvidiaOptions.model_validate({"consumableShares": "memory", "migStrategy": "dynamic"})
    with pytest.raises(ValidationError, match="passthrough: not supported together with consumableShares"):
        NvidiaOptions.model_validate({"consumableShares": "memory", "passthrough": True})
    with pytest.raises(ValidationError, match="shareMemoryValues: must be ascending"):
        NvidiaOptions.model_validate({"consumableShares": "memory", "shareMemoryValues": ["20Gi", "10Gi"]})


async def test_share_policy_values_and_unfit_devices(driver_factory, host):
    drv = driver_factory(host, migStrategy="none", consumableShares="memory",
                         shareMemoryValues=["10Gi", "20Gi", "40Gi", "80Gi"], shareMemoryDefault="20Gi")
    pool = await drv.discover()
    mem = drv.device(pool, GPU).capacity["memory"]
    assert mem.request_policy.default == 20 << 30
    assert list(mem.request_policy.valid_values) == [10 << 30, 20 << 30, 40 << 30, 80 << 30]
    big = driver_factory(host, state="s2", migStrategy="none", consumableShares="memory", shareMemoryMin="100Gi")
    d = big.device(await big.discover(), GPU)
    assert not d.allow_multiple_allocations  # does not fit: published unshared, with a warning

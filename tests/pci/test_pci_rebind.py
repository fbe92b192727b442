"""Driver rebinding through the journal: bind, restore from any step, idempotence, errors."""
import pytest

from dra_framework.pci import PciFunction, char_numbers, RebindError, bind_driver, journal_key, restore, restore_journal
from dra_framework.pci.rebind import STEPS
from dra_framework.testing.hosttree import FakePciKernel

VF = "0000:17:01.0"


class Journal:
    """Stands in for PrepareContext.record: keeps what a checkpoint would hold, and can 'crash'
    (raise) at the n-th record, i.e. before the write that record announces."""

    def __init__(self, crash_at: int | None = None):
        self.journal, self.records, self.crash_at = {}, [], crash_at

    async def record(self, key, value):
        if self.crash_at is not None and len(self.records) == self.crash_at:
            raise SystemExit("crash")
        self.records.append((key, dict(value)))
        self.journal[key] = dict(value)


async def test_bind_to_vfio_and_restore(e810):
    ctx = Journal()
    with FakePciKernel(e810) as kernel:
        assert await bind_driver(ctx, e810, VF, "vfio-pci") is True
        fn = PciFunction.at(e810, VF)
        assert fn.driver == "vfio-pci" and fn.driver_override is None
        assert [v["step"] for _, v in ctx.records] == ["unbind", "override", "bind", "clear", "done"]
        assert ctx.journal[journal_key(VF)] == {"bdf": VF, "original": "iavf", "target": "vfio-pci", "step": "done"}
        assert kernel.writes == [("drivers/iavf/unbind", VF), ("drivers/vfio-pci/bind", VF)]
        assert char_numbers(e810, "/dev/vfio/17") == (243, 1)  # the group node vfio-pci created
        assert await restore_journal(e810, ctx.journal) == [VF]
        assert fn.driver == "iavf" and fn.driver_override is None
        assert char_numbers(e810, "/dev/vfio/17") is None and not (e810 / "dev/vfio/17").exists()
        assert await restore_journal(e810, ctx.journal) == []  # idempotent


async def test_already_on_target_is_left_alone(e810):
    ctx = Journal()
    with FakePciKernel(e810) as kernel:
        assert await bind_driver(ctx, e810, "0000:17:01.3", "vfio-pci") is False
        assert ctx.records == [] and kernel.writes == []
        assert await restore_journal(e810, ctx.journal) == []
    assert PciFunction.at(e810, "0000:17:01.3").driver == "vfio-pci"


@pytest.mark.parametrize("crash_at", range(len(STEPS)))
async def test_rollback_from_every_step_uses_the_journal_alone(e810, crash_at):
    """Crash before the write each step announces; restore sees only the journal."""
    ctx = Journal(crash_at=crash_at)
    with FakePciKernel(e810):
        with pytest.raises(SystemExit):
            await bind_driver(ctx, e810, VF, "vfio-pci")
        await restore_journal(e810, ctx.journal)
        fn = PciFunction.at(e810, VF)
        assert fn.driver == "iavf" and fn.driver_override is None


async def test_retry_after_crash_keeps_the_original_driver(e810):
    """A prepare retried with the journal of the first attempt: the original stays iavf."""
    ctx = Journal(crash_at=4)  # after bind, before clear
    with FakePciKernel(e810):
        with pytest.raises(SystemExit):
            await bind_driver(ctx, e810, VF, "vfio-pci")
        ctx.crash_at = None
        assert PciFunction.at(e810, VF).driver == "vfio-pci"
        assert await bind_driver(ctx, e810, VF, "vfio-pci") is True
        assert ctx.journal[journal_key(VF)]["original"] == "iavf"
        assert PciFunction.at(e810, VF).driver_override is None
        await restore_journal(e810, ctx.journal)
        assert PciFunction.at(e810, VF).driver == "iavf"


async def test_target_driver_not_loaded_is_a_clear_error(e810):
    ctx = Journal()
    with FakePciKernel(e810):
        with pytest.raises(RebindError, match=r"0000:17:01\.0 to uio_pci_generic: driver uio_pci_generic is not loaded"):
            await bind_driver(ctx, e810, VF, "uio_pci_generic")
        assert PciFunction.at(e810, VF).driver == "iavf" and ctx.records == []  # checked before any write


async def test_missing_device_and_binding_that_never_happens(e810):
    with pytest.raises(RebindError, match="no such device"):
        await bind_driver(Journal(), e810, "0000:17:09.0", "vfio-pci")
    # no kernel playing along: the unbind write never takes effect
    with pytest.raises(RebindError, match=r"driver is iavf after 0\.05s, expected none"):
        await bind_driver(Journal(), e810, VF, "vfio-pci", timeout=0.05)


async def test_restore_keeps_going_and_reports_every_failure(e810):
    """One stuck device never blocks the others; one error names all that failed."""
    ctx = Journal()
    with FakePciKernel(e810):
        for vf in ("0000:17:01.0", "0000:17:01.1", "0000:17:01.2"):
            await bind_driver(ctx, e810, vf, "vfio-pci")
        (e810 / "sys/bus/pci/drivers/iavf/bind").unlink()  # the original driver went away
        with pytest.raises(RebindError) as err:
            await restore_journal(e810, ctx.journal)
    msg = str(err.value)
    assert msg.count("does not exist") == 3 and all(v in msg for v in ("17:01.0", "17:01.1", "17:01.2"))
    for vf in ("0000:17:01.0", "0000:17:01.1", "0000:17:01.2"):
        assert PciFunction.at(e810, vf).driver is None  # each was tried


async def test_restore_tolerates_a_vanished_device_and_a_reboot(e810):
    entry = {"bdf": "0000:17:01.7", "original": "iavf", "target": "vfio-pci", "step": "done"}
    assert await restore(e810, entry) is False
    ctx = Journal()
    with FakePciKernel(e810):
        await bind_driver(ctx, e810, VF, "vfio-pci")
    assert await restore_journal(e810, ctx.journal, physically_prepared=False) == []
    assert PciFunction.at(e810, VF).driver == "vfio-pci"


async def test_restore_to_no_driver(e810):
    """A device that had no driver goes back to none."""
    with FakePciKernel(e810):
        from dra_framework.testing.hosttree import HostTree
        HostTree(e810).bind(VF, None)
        ctx = Journal()
        await bind_driver(ctx, e810, VF, "vfio-pci")
        assert ctx.journal[journal_key(VF)]["original"] is None
        await restore_journal(e810, ctx.journal)
    assert PciFunction.at(e810, VF).driver is None


async def test_concurrent_rebinding_of_different_devices(e810):
    """Claims prepared concurrently: every VF ends up on vfio-pci and back (rebinding under one
    host root is serialized, as the kernel does; no write overtakes another)."""
    import asyncio
    vfs = ["0000:17:01.0", "0000:17:01.1", "0000:17:01.2"]
    ctxs = [Journal() for _ in vfs]
    with FakePciKernel(e810):
        assert await asyncio.gather(*(bind_driver(c, e810, v, "vfio-pci") for c, v in zip(ctxs, vfs, strict=True))) == [True] * 3
        assert [PciFunction.at(e810, v).driver for v in vfs] == ["vfio-pci"] * 3
        await asyncio.gather(*(restore_journal(e810, c.journal) for c in ctxs))
        assert [PciFunction.at(e810, v).driver for v in vfs] == ["iavf"] * 3

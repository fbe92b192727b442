"""Driver rebinding of PCI functions (to ``vfio-pci`` and back), crash-safe through the claim journal.

The kernel's interface (https://www.kernel.org/doc/Documentation/ABI/testing/sysfs-bus-pci),
used the same way by the SR-IOV, QAT, Intel/AMD GPU and NVIDIA VFIO drivers:

1. ``echo <bdf> > /sys/bus/pci/drivers/<current>/unbind``
2. ``echo <target> > /sys/bus/pci/devices/<bdf>/driver_override`` (only ``<target>`` may bind)
3. ``echo <bdf> > /sys/bus/pci/drivers/<target>/bind``
4. ``echo > /sys/bus/pci/devices/<bdf>/driver_override`` (clear, so a later probe is normal)

:func:`bind_driver` writes the journal entry ``pci.rebind/<bdf>`` = ``{"bdf", "original",
"target", "step"}`` with ``ctx.record`` before *each* of those writes, so the checkpoint always
says what the device was bound to and how far the change got. :func:`restore` puts a device back
from that entry alone, whatever step it stopped at, and is idempotent: a device already back, or
gone from the bus (VFs removed, node rebooted), needs nothing. :func:`restore_journal` restores
every entry of a claim and raises one error listing all failures only after trying them all, so
one stuck device never blocks the rollback of the others. Rebinding under one host root is done
one device at a time within the process (claims prepared concurrently wait for each other).

A device already bound to the target is left alone (no writes, nothing to restore), so a prepare
retried after a crash, or a device bound to ``vfio-pci`` at boot, needs no change.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
import weakref
from pathlib import Path
from typing import Any, Mapping, Protocol

from .names import normalize_bdf
from .sysfs import PciFunction

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "pci.rebind/"
#: Steps in the order :func:`bind_driver` performs them (``step`` in the journal = about to do).
STEPS = ("unbind", "override", "bind", "clear", "done")


#: One rebinding at a time per host root (and event loop): the kernel serializes driver binding
#: anyway, and functions of one IOMMU group must not be half-moved by two claims at once.
_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]" = weakref.WeakKeyDictionary()


def _host_lock(root: Path) -> asyncio.Lock:
    per_loop = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(str(root.resolve()), asyncio.Lock())


class Recorder(Protocol):
    async def record(self, key: str, value: Any) -> None: ...


class RebindError(RuntimeError):
    """A rebinding write failed or did not take effect; the message names the device, the file
    and the driver."""


def journal_key(bdf: str) -> str:
    return JOURNAL_PREFIX + normalize_bdf(bdf)


def _write(path: Path, data: str, what: str) -> None:
    # one write(2) without O_CREAT: a missing file is an error (driver not loaded), never created
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise RebindError(f"{what}: {path} does not exist (driver not loaded?)") from exc
        raise RebindError(f"{what}: cannot open {path}: {exc.strerror}") from exc
    try:
        os.write(fd, data.encode())
    except OSError as exc:
        raise RebindError(f"{what}: writing {data.strip()!r} to {path} failed: {exc.strerror}") from exc
    finally:
        os.close(fd)


async def _wait_driver(fn: PciFunction, want: str | None, timeout: float, what: str) -> None:
    """The kernel binds/unbinds synchronously; the wait covers emulated hosts and slow probes."""
    deadline = time.monotonic() + timeout
    while True:
        now = fn.driver
        if now == want:
            return
        if time.monotonic() >= deadline:
            raise RebindError(f"{what}: driver is {now or 'none'} after {timeout:g}s, expected {want or 'none'}")
        await asyncio.sleep(0.005)


def _bus(host_root: Path) -> Path:
    return host_root / "sys/bus/pci"


async def bind_driver(ctx: Recorder, host_root: Path | str, bdf: str, target: str, *,
                      timeout: float = 10.0) -> bool:
    """Bind PCI function ``bdf`` to driver ``target``, journaling through ``ctx.record`` before
    each write. Returns True when it changed the binding, False when it already was ``target``.

    Raises :class:`RebindError` (device missing, driver not loaded, a write refused, the binding
    not taking effect within ``timeout`` seconds); the journal entry then lets
    :func:`restore` undo the part that was done. An entry already in ``ctx.journal`` (a retried
    prepare) keeps its ``original``."""
    root = Path(host_root)
    fn = PciFunction.at(root, bdf)
    what = f"rebinding PCI device {fn.bdf} to {target}"
    if not fn.exists():
        raise RebindError(f"{what}: no such device under {root / 'sys/bus/pci/devices'}")
    async with _host_lock(root):
        return await _bind(ctx, root, fn, target, timeout, what)


async def _bind(ctx: Recorder, root: Path, fn: PciFunction, target: str, timeout: float, what: str) -> bool:
    current = fn.driver
    key = journal_key(fn.bdf)
    prior = getattr(ctx, "journal", {}).get(key)
    original = prior["original"] if isinstance(prior, Mapping) and "original" in prior else current
    if current == target and fn.driver_override in (None, target):
        if prior is None:
            return False
        await ctx.record(key, {"bdf": fn.bdf, "original": original, "target": target, "step": "done"})
        return original != target

    if not (_bus(root) / "drivers" / target).is_dir():
        raise RebindError(f"{what}: driver {target} is not loaded (no {_bus(root) / 'drivers' / target})")

    async def step(name: str) -> None:
        await ctx.record(key, {"bdf": fn.bdf, "original": original, "target": target, "step": name})

    if current is not None and current != target:
        await step("unbind")
        _write(_bus(root) / "drivers" / current / "unbind", fn.bdf, what)
        await _wait_driver(fn, None, timeout, what)
    await step("override")
    _write(fn.path / "driver_override", target + "\n", what)
    if fn.driver is None:
        await step("bind")
        _write(_bus(root) / "drivers" / target / "bind", fn.bdf, what)
        await _wait_driver(fn, target, timeout, what)
    await step("clear")
    _write(fn.path / "driver_override", "\n", what)
    await step("done")
    log.info("PCI device %s: driver %s -> %s", fn.bdf, original or "none", target)
    return True


async def restore(host_root: Path | str, entry: Mapping[str, Any], *, timeout: float = 10.0) -> bool:
    """Put a device back to ``entry["original"]`` (a journal value of :func:`bind_driver`).
    Returns True when it wrote anything. Tolerates every intermediate state and an already
    restored or vanished device; raises :class:`RebindError` when a write fails."""
    root = Path(host_root)
    fn = PciFunction.at(root, entry["bdf"])
    original, target = entry.get("original"), entry.get("target")
    what = f"restoring PCI device {fn.bdf} to {original or 'no driver'}"
    async with _host_lock(root):
        return await _restore(root, fn, original, target, timeout, what)


async def _restore(root: Path, fn: PciFunction, original: str | None, target: str | None, timeout: float,
                   what: str) -> bool:
    if not fn.exists():
        log.info("PCI device %s is gone; nothing to restore", fn.bdf)
        return False
    if original == target and fn.driver == original and fn.driver_override is None:
        return False
    wrote = False
    if fn.driver_override is not None and fn.driver_override == target != original:
        _write(fn.path / "driver_override", "\n", what)
        wrote = True
    current = fn.driver
    if current != original:
        if current is not None:
            _write(_bus(root) / "drivers" / current / "unbind", fn.bdf, what)
            await _wait_driver(fn, None, timeout, what)
        if original is not None:
            _write(_bus(root) / "drivers" / original / "bind", fn.bdf, what)
            await _wait_driver(fn, original, timeout, what)
        wrote = True
    if wrote:
        log.info("PCI device %s: driver %s -> %s (restored)", fn.bdf, current or "none", original or "none")
    return wrote


async def restore_journal(host_root: Path | str, journal: Mapping[str, Any], *, physically_prepared: bool = True,
                          timeout: float = 10.0) -> list[str]:
    """Restore every ``pci.rebind/*`` entry of a claim's journal (``StoredClaim.journal``), in
    reverse order of recording. Returns the addresses restored; raises one :class:`RebindError`
    naming every device that failed, after trying all of them. With ``physically_prepared``
    False (``StoredClaim.physically_prepared``: the node rebooted since) the bindings are already
    gone and nothing is written."""
    done: list[str] = []
    errors: list[str] = []
    if not physically_prepared:
        return done
    for key in reversed([k for k in journal if k.startswith(JOURNAL_PREFIX)]):
        entry = journal[key]
        try:
            if await restore(host_root, entry, timeout=timeout):
                done.append(entry["bdf"])
        except (RebindError, OSError, KeyError, ValueError) as exc:
            errors.append(f"{key}: {exc}")
    if errors:
        raise RebindError("; ".join(errors))
    return done

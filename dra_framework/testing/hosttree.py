"""Build fake host trees (``/sys``, ``/dev``, ``/proc``) for tests and sample hosts.

A backend reads the host through its ``hostRoot`` option, so a test host is a directory tree that
looks like the parts of a node the backend reads. :class:`HostTree` writes one with the shapes
the kernel uses: PCI functions under ``sys/devices/pci<domain>:<bus>/...`` with relative symlinks
from ``sys/bus/pci/devices``, ``driver``/``physfn``/``virtfn<N>``/``iommu_group`` symlinks,
driver directories with ``bind``/``unbind`` files, character-device stand-ins (regular files plus
the ``dev/char/<major>:<minor>`` symlinks udev keeps), ``proc/devices`` and a ``pci.ids``
excerpt::

    t = HostTree(tmp_path)
    t.pci_driver("ice"); t.pci_driver("iavf"); t.pci_driver("vfio-pci")
    pf = t.pci_function("0000:17:00.0", parent="pci0000:16/0000:16:01.0", vendor="8086",
                        device="1592", class_code="020000", driver="ice", numa_node=0)
    t.pci_function("0000:17:01.0", parent="pci0000:16/0000:16:01.0", vendor="8086",
                   device="1889", class_code="020000", driver="iavf", iommu_group=57)
    t.sriov("0000:17:00.0", ["0000:17:01.0"])

Sample-host data must come from real machines (addresses, ids, attribute formats); the README
of each sample host says where its numbers come from.

Writes a backend makes (driver rebinding) land in plain files here; :class:`FakePciKernel` plays
the kernel's part for them (see its doc).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterable, Mapping

from ..pci.devnodes import char_majors

FAKE_KERNEL_FILE = "fake-kernel.json"


class HostTree:
    """Writes files, directories and symlinks under ``root`` (created if missing). Paths are
    host paths (``/sys/...`` or ``sys/...``); every method returns the path it wrote."""

    def __init__(self, root: str | Path) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        self.root = Path(root).resolve()

    # --- generic ---------------------------------------------------------------------------
    def path(self, p: str | Path) -> Path:
        return self.root / str(p).lstrip("/")

    def dir(self, p: str | Path) -> Path:
        d = self.path(p)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def file(self, p: str | Path, text: str = "") -> Path:
        f = self.path(p)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        return f

    def symlink(self, p: str | Path, target: str) -> Path:
        """``p`` → ``target`` (written as given: keep targets relative, as the kernel does)."""
        link = self.path(p)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
        return link

    def rel_symlink(self, p: str | Path, target: str | Path) -> Path:
        """A symlink at ``p`` to the host path ``target``, written relative to ``p``'s directory."""
        link = self.path(p)
        return self.symlink(p, os.path.relpath(self.path(target), link.parent))

    def char_device(self, p: str, major: int, minor: int, text: str = "") -> Path:
        """A stand-in for the character device ``p``: a regular file, plus the
        ``dev/char/<major>:<minor>`` symlink udev keeps for it (how
        :func:`dra_framework.pci.devnodes.char_numbers` finds the numbers)."""
        node = self.file(p, text)
        self.rel_symlink(f"dev/char/{major}:{minor}", p)
        return node

    def proc_devices(self, char: Iterable[tuple[int, str]], block: Iterable[tuple[int, str]] = ()) -> Path:
        """``proc/devices`` in the kernel's format (``"%3d %s\\n"``, a blank line between sections)."""
        lines = ["Character devices:"] + [f"{m:3d} {n}" for m, n in char]
        lines += ["", "Block devices:"] + [f"{m:3d} {n}" for m, n in block]
        return self.file("proc/devices", "\n".join(lines) + "\n")

    def pci_ids(self, text: str) -> Path:
        """A ``pci.ids`` excerpt at ``usr/share/misc/pci.ids`` (where pciutils looks)."""
        return self.file("usr/share/misc/pci.ids", text)

    # --- PCI -------------------------------------------------------------------------------
    def pci_driver(self, name: str, module: str | None = None) -> Path:
        """``sys/bus/pci/drivers/<name>`` with ``bind``, ``unbind``, ``new_id``, ``remove_id`` (and
        ``sys/bus/pci/drivers_probe``); ``module`` adds the ``module`` symlink (``vfio_pci``)."""
        d = self.dir(f"sys/bus/pci/drivers/{name}")
        for f in ("bind", "unbind", "new_id", "remove_id"):
            if not (d / f).exists():
                (d / f).write_text("")
        if not self.path("sys/bus/pci/drivers_probe").exists():
            self.file("sys/bus/pci/drivers_probe")
        if module:
            self.file(f"sys/module/{module}/refcnt", "0\n")
            self.rel_symlink(f"sys/bus/pci/drivers/{name}/module", f"sys/module/{module}")
        return d

    def device_dir(self, bdf: str) -> Path:
        """The real directory of a function written by :meth:`pci_function`."""
        return self.path(f"sys/bus/pci/devices/{bdf}").resolve()

    def pci_function(self, bdf: str, *, parent: str, vendor: str, device: str, class_code: str,
                     subsystem_vendor: str | None = None, subsystem_device: str | None = None,
                     driver: str | None = None, native_driver: str | None = None,
                     numa_node: int = -1, local_cpulist: str | None = None,
                     iommu_group: int | None = None, attrs: Mapping[str, str] | None = None) -> Path:
        """A PCI function at ``sys/devices/<parent>/<bdf>`` (``parent`` = root complex and bridges,
        ``pci0000:16/0000:16:01.0``) linked from ``sys/bus/pci/devices/<bdf>``. Ids are hex
        without ``0x`` (``8086``, class ``020000``). ``driver`` binds it (the driver directory
        is created); ``native_driver`` (default ``driver``) is what the kernel would probe it with
        (used by :class:`FakePciKernel`). ``attrs`` adds more attribute files verbatim."""
        d = self.dir(f"sys/devices/{parent}/{bdf}")
        sysd = f"sys/devices/{parent}/{bdf}"
        self.file(f"{sysd}/vendor", f"0x{vendor}\n")
        self.file(f"{sysd}/device", f"0x{device}\n")
        self.file(f"{sysd}/class", f"0x{class_code}\n")
        if subsystem_vendor:
            self.file(f"{sysd}/subsystem_vendor", f"0x{subsystem_vendor}\n")
        if subsystem_device:
            self.file(f"{sysd}/subsystem_device", f"0x{subsystem_device}\n")
        self.file(f"{sysd}/numa_node", f"{numa_node}\n")
        if local_cpulist is not None:
            self.file(f"{sysd}/local_cpulist", f"{local_cpulist}\n")
        self.file(f"{sysd}/driver_override", "(null)\n")
        for k, v in (attrs or {}).items():
            self.file(f"{sysd}/{k}", v)
        self.rel_symlink(f"sys/bus/pci/devices/{bdf}", sysd)
        if driver:
            self.bind(bdf, driver)
        native = native_driver or driver
        if native:
            self._native(bdf, native)
        if iommu_group is not None:
            self.iommu_group(iommu_group, [bdf])
        return d

    def bind(self, bdf: str, driver: str | None) -> None:
        """Set the ``driver`` symlink (and the driver's ``<bdf>`` link); None unbinds."""
        d = self.device_dir(bdf)
        old = d / "driver"
        if old.is_symlink():
            stale = self.path(f"sys/bus/pci/drivers/{os.path.basename(os.readlink(old))}/{bdf}")
            if stale.is_symlink():
                stale.unlink()
            old.unlink()
        if driver:
            self.pci_driver(driver)
            self.rel_symlink(d.relative_to(self.root) / "driver", f"sys/bus/pci/drivers/{driver}")
            self.rel_symlink(f"sys/bus/pci/drivers/{driver}/{bdf}", d.relative_to(self.root))

    def sriov(self, pf: str, vfs: list[str]) -> None:
        """Link a PF and its VFs: ``virtfn<i>`` on the PF for ``vfs[i]``, ``physfn`` on each VF,
        ``sriov_numvfs`` on the PF."""
        pf_dir = self.device_dir(pf).relative_to(self.root)
        for i, vf in enumerate(vfs):
            vf_dir = self.device_dir(vf).relative_to(self.root)
            self.rel_symlink(pf_dir / f"virtfn{i}", vf_dir)
            self.rel_symlink(vf_dir / "physfn", pf_dir)
        self.file(pf_dir / "sriov_numvfs", f"{len(vfs)}\n")

    def iommu_group(self, n: int, bdfs: list[str], noiommu: bool = False) -> Path:
        """``sys/kernel/iommu_groups/<n>`` with ``devices/<bdf>`` links and each function's
        ``iommu_group`` link; ``noiommu`` writes the group ``name`` ``vfio-noiommu``."""
        g = self.dir(f"sys/kernel/iommu_groups/{n}")
        for bdf in bdfs:
            dev = self.device_dir(bdf).relative_to(self.root)
            self.rel_symlink(f"sys/kernel/iommu_groups/{n}/devices/{bdf}", dev)
            self.rel_symlink(dev / "iommu_group", f"sys/kernel/iommu_groups/{n}")
        if noiommu:
            self.file(f"sys/kernel/iommu_groups/{n}/name", "vfio-noiommu\n")
        return g

    def netdev(self, bdf: str, ifname: str, **attrs: str) -> Path:
        """``<device>/net/<ifname>`` with attribute files (``address="b4:96:..."``) and the
        ``sys/class/net/<ifname>`` link."""
        dev = self.device_dir(bdf).relative_to(self.root)
        n = self.dir(dev / "net" / ifname)
        for k, v in attrs.items():
            (n / k).write_text(f"{v}\n")
        self.rel_symlink(f"sys/class/net/{ifname}", dev / "net" / ifname)
        return n

    def _native(self, bdf: str, driver: str) -> None:
        f = self.root / FAKE_KERNEL_FILE
        data = json.loads(f.read_text()) if f.exists() else {"nativeDrivers": {}}
        data["nativeDrivers"][bdf] = driver
        f.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class FakePciKernel:
    """Plays the kernel's part for driver (re)binding writes into a :class:`HostTree`.

    Real sysfs reacts to ``echo <bdf> > drivers/<d>/unbind`` (the driver lets go: the ``driver``
    symlink disappears), ``> drivers/<d>/bind`` (binds when ``driver_override`` is unset or names
    ``d``) and ``> sys/bus/pci/drivers_probe`` (binds the override, or the native driver from
    ``fake-kernel.json``); binding to ``vfio-pci`` creates ``dev/vfio/<group>`` (with its
    ``dev/char`` link when ``proc/devices`` lists ``vfio``), unbinding the group's last device
    removes it. On a plain tree those writes just sit in files; this thread polls them
    (every ``interval`` seconds), applies them to the symlinks and empties the file, so code that
    writes and then waits for the ``driver`` link works unchanged, in-process or from a
    subprocess. A write to a missing driver's ``bind`` fails with ENOENT by itself, as on a host
    without the module. Use as a context manager."""

    def __init__(self, root: str | Path, interval: float = 0.005) -> None:
        self.tree = HostTree(root)
        self.interval = interval
        self.writes: list[tuple[str, str]] = []  # (file relative to sys/bus/pci, bdf), in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "FakePciKernel":
        self._thread = threading.Thread(target=self._run, name="fake-pci-kernel", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _native(self) -> dict[str, str]:
        try:
            return json.loads((self.tree.root / FAKE_KERNEL_FILE).read_text())["nativeDrivers"]
        except (OSError, ValueError, KeyError):
            return {}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.step()

    def step(self) -> None:
        """Apply pending writes once (also callable directly from a test)."""
        bus = self.tree.path("sys/bus/pci")
        files = sorted(bus.glob("drivers/*/bind")) + sorted(bus.glob("drivers/*/unbind")) + [bus / "drivers_probe"]
        for f in files:
            try:
                bdf = f.read_text().strip().strip("\0")
            except OSError:
                continue
            if not bdf or not self.tree.path(f"sys/bus/pci/devices/{bdf}").exists():
                continue
            f.write_text("")
            self.writes.append((str(f.relative_to(bus)), bdf))
            dev = self.tree.device_dir(bdf)
            current = os.path.basename(os.readlink(dev / "driver")) if (dev / "driver").is_symlink() else None
            written = (dev / "driver_override").read_text().strip().strip("\0") \
                if (dev / "driver_override").exists() else ""
            override = None if written in ("", "(null)") else written
            # the group node changes before the driver link, as the kernel has it done when the
            # write returns: whoever sees the new driver also sees the node
            if f.name == "unbind":
                if current == f.parent.name:
                    if current == "vfio-pci":
                        self._vfio_group(dev, present=False)
                    self.tree.bind(bdf, None)
            elif current is None:
                target = f.parent.name if f.name == "bind" else (override or self._native().get(bdf))
                if target and (override is None or override == target):
                    if target == "vfio-pci":
                        self._vfio_group(dev, present=True)
                    self.tree.bind(bdf, target)

    def _vfio_group(self, dev: Path, present: bool) -> None:
        """vfio-pci creates ``/dev/vfio/<group>`` (``noiommu-<group>`` for a no-IOMMU group) when
        a group's first device binds (major of ``vfio`` in ``proc/devices``, next free minor; udev
        adds the ``dev/char`` link) and removes it when the last one unbinds."""
        if not (dev / "iommu_group").is_symlink():
            return
        group = os.path.basename(os.readlink(dev / "iommu_group"))
        major = char_majors(self.tree.root).get("vfio")
        if major is None:
            return
        noiommu = (dev / "iommu_group" / "name").exists() and \
            (dev / "iommu_group" / "name").read_text().strip() == "vfio-noiommu"
        rel = f"dev/vfio/{'noiommu-' if noiommu else ''}{group}"
        node, char = self.tree.path(rel), self.tree.path("dev/char")
        links = {e.name: os.path.normpath(os.path.join("/dev/char", os.readlink(e)))
                 for e in char.glob(f"{major}:*") if e.is_symlink()} if char.is_dir() else {}
        if present and not node.exists():
            used = {int(k.split(":")[1]) for k in links}
            self.tree.char_device(rel, major, min(set(range(len(used) + 1)) - used))
        elif not present:
            members = self.tree.path(f"sys/kernel/iommu_groups/{group}/devices")
            if any(os.path.basename(os.readlink(m / "driver")) == "vfio-pci" for m in members.iterdir()
                   if m.name != dev.name and (m / "driver").is_symlink()):
                return
            node.unlink(missing_ok=True)
            for k, target in links.items():
                if target == "/" + rel:
                    (char / k).unlink()


def pci_bindings(driver_process) -> dict[str, dict[str, list[str | None]]]:
    """A leftovers probe for the conformance suite (``--dra-leftovers``): for every backend
    ``hostRoot`` of the daemon's config (a :class:`~dra_framework.testing.DriverProcess`),
    each PCI function's ``[driver, driver_override]`` and the ``/dev/vfio`` nodes. A claim's
    unprepare must leave all of it as it found it."""
    from ..pci.sysfs import walk

    out: dict[str, dict[str, list[str | None]]] = {}
    for d in driver_process.config.get("drivers", []):
        for b in d.get("backends", []):
            root = Path((b.get("options") or {}).get("hostRoot", "/"))
            funcs: dict[str, list[str | None]] = {f.bdf: [f.driver, f.driver_override] for f in walk(root)}
            vfio = root / "dev/vfio"
            funcs["/dev/vfio"] = [*sorted(os.listdir(vfio))] if vfio.is_dir() else []
            out[str(root)] = funcs
    return out


class FakeUdevSource:
    """An event source for :class:`dra_framework.pci.events.HotplugWatcher` in tests:
    :meth:`emit` delivers an event as the netlink monitor would (from the calling thread)."""

    def __init__(self) -> None:
        self.callback = None
        self.stopped = False

    def start(self, callback) -> None:  # noqa: ANN001 - same shape as the Protocol
        self.callback = callback

    def stop(self) -> None:
        self.stopped = True

    def emit(self, action: str, sys_path: str, subsystem: str = "pci") -> None:
        if self.callback is not None and not self.stopped:
            self.callback(action, sys_path, subsystem)

"""Read FPGA cards from sysfs under the host root: Intel DFL ports and FMEs, Alveo PF pairs.

DFL layout (Linux ``Documentation/fpga/dfl.rst``, "Device enumeration"; docs/fpga.md; OPAE's
out-of-tree ``intel-fpga`` driver has the same files under ``fpga/intel-fpga-dev.<n>/intel-fpga-
{fme,port}.<m>`` with the interface id in ``pr/interface_id``)::

    <pci function>/fpga_region/region<X>/dfl-fme.<n>/{dev,bitstream_id,ports_num,errors/}
    <pci function>/fpga_region/region<X>/dfl-fme.<n>/dfl-fme-region.<k>/fpga_region/region<Y>/compat_id
    <pci function>/fpga_region/region<X>/dfl-port.<m>/{dev,id,afu_id,errors/errors}

The FME is always on the PF; a VF holds one port and finds its FME through ``physfn``. Instance
numbers (``dfl-port.<m>``, ``region<X>``) are assigned at enumeration and may change after a
reset, so nothing is keyed by them: a port is named by its PCI function and port ``id``.

Alveo layout (XRT ``sysfs.rst``, FPGA_as_a_Service ``fpga.go``): a management PF (``mgmt_pf``
file, ``instance``, node ``/dev/xclmgmt<instance>``) and a user PF (``user_pf``,
``rom.u.*/{VBNV,timestamp}``, ``xmc.u.*/serial_num``, ``interface_uuids``, ``logic_uuids``,
``xclbinuuid``, ``ready``, ``drm/renderD<N>/dev``) with the same domain:bus:device.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dra_framework.api import PciFunction, walk_pci

from . import ids


def read(path: Path) -> str | None:
    """A sysfs attribute, stripped; None when missing or unreadable."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def dev_numbers(text: str | None) -> tuple[int, int] | None:
    """``"237:0"`` (a ``dev`` file) → (237, 0)."""
    if not text:
        return None
    major, sep, minor = text.partition(":")
    return (int(major), int(minor)) if sep and major.isdigit() and minor.isdigit() else None


def _glob_sorted(base: Path, pattern: str) -> list[Path]:
    try:
        return sorted(base.glob(pattern), key=lambda p: (len(p.name), p.name))
    except OSError:
        return []


@dataclass
class DflFeatureDevice:
    """A DFL feature device (``dfl-fme.N`` or ``dfl-port.N``) of a PCI function."""

    fn: PciFunction
    path: Path

    @property
    def instance(self) -> str:
        return self.path.name

    @property
    def dev(self) -> tuple[int, int] | None:
        return dev_numbers(read(self.path / "dev"))


class DflFme(DflFeatureDevice):
    @property
    def bitstream_id(self) -> str | None:
        return read(self.path / "bitstream_id")

    @property
    def interface_id(self) -> str | None:
        """The PR region's ``compat_id`` (OPAE's driver: ``pr/interface_id``): the FIM identity a
        PR image must match."""
        for f in _glob_sorted(self.path, "dfl-fme-region.*/fpga_region/region*/compat_id") + [self.path / "pr/interface_id"]:
            v = ids.normalize_uuid(read(f))
            if v:
                return v
        return None


class DflPort(DflFeatureDevice):
    @property
    def port_id(self) -> int:
        v = read(self.path / "id")
        return int(v) if v and v.isdigit() else 0

    @property
    def afu_id(self) -> str | None:
        return ids.normalize_uuid(read(self.path / "afu_id"))

    @property
    def errors(self) -> int | None:
        """``errors/errors`` as a number (0: none); None when the file is missing."""
        v = read(self.path / "errors" / "errors")
        try:
            return int(v, 0) if v else None
        except ValueError:
            return None

    def exists(self) -> bool:
        return self.path.is_dir()


#: In-tree DFL driver, then OPAE's out-of-tree ``intel-fpga`` driver (same files, ``pr/interface_id``).
FME_GLOBS = ("fpga_region/region*/dfl-fme.*", "fpga/intel-fpga-dev.*/intel-fpga-fme.*")
PORT_GLOBS = ("fpga_region/region*/dfl-port.*", "fpga/intel-fpga-dev.*/intel-fpga-port.*")


def dfl_fmes(fn: PciFunction) -> list[DflFme]:
    return [DflFme(fn, p) for g in FME_GLOBS for p in _glob_sorted(fn.path, g)]


def dfl_ports(fn: PciFunction) -> list[DflPort]:
    return [DflPort(fn, p) for g in PORT_GLOBS for p in _glob_sorted(fn.path, g)]


@dataclass
class DflFunction:
    """A PCI function with a DFL id: its board, ports and the FME that programs them."""

    fn: PciFunction
    board: ids.DflBoard
    ports: list[DflPort] = field(default_factory=list)
    fme: DflFme | None = None
    problem: str | None = None  # why the function is unusable, None when usable
    reason: str = ""


def scan_dfl(host_root: Path) -> list[DflFunction]:
    """Every function with a DFL id (sorted by address), with its ports and FME. A problem with
    one function is recorded on it (``problem``, ``reason``), never raised."""
    out: list[DflFunction] = []
    for fn in walk_pci(host_root):
        board = ids.dfl_board(fn.vendor, fn.device, fn.subsystem_device)
        if board is None:
            continue
        f = DflFunction(fn, board)
        out.append(f)
        pf = fn.physfn if fn.is_vf else fn
        f.ports = dfl_ports(fn)
        fmes = dfl_fmes(pf) if pf is not None else []
        f.fme = fmes[0] if fmes else None
        if fn.driver is None:
            f.problem, f.reason = "no-driver", "no driver bound (expected dfl-pci)"
        elif not (fn.path / "fpga_region").is_dir() and not (fn.path / "fpga").is_dir():
            f.problem, f.reason = "no-fim", f"driver {fn.driver} bound but no FPGA region: no FIM flashed or DFL enumeration failed"
        elif f.fme is None and (f.ports or fn.is_vf):
            where = f"its PF {pf.bdf}" if fn.is_vf and pf is not None else "this PF"
            f.problem, f.reason = "no-fme", f"port found but no FME on {where}"
        elif not f.ports and not fn.is_vf and not fn.virtfns():
            f.problem, f.reason = "no-port", "FME found but no port: ports released and no VF enabled"
    return out


@dataclass
class AlveoCard:
    """The two PFs of one Alveo card (either may be missing), keyed by domain:bus:device."""

    key: str
    board: str
    mgmt: PciFunction | None = None
    user: PciFunction | None = None
    problem: str | None = None
    reason: str = ""

    def _first(self, fn: PciFunction | None, pattern: str) -> Path | None:
        if fn is None:
            return None
        found = _glob_sorted(fn.path, pattern)
        return found[0] if found else None

    @property
    def vbnv(self) -> str | None:
        p = self._first(self.user, "rom.u.*/VBNV")
        return read(p) if p else None

    @property
    def timestamp(self) -> str | None:
        p = self._first(self.user, "rom.u.*/timestamp")
        return read(p) if p else None

    @property
    def serial(self) -> str | None:
        p = self._first(self.user, "xmc.u.*/serial_num")
        return read(p) if p else None

    @property
    def interface_id(self) -> str | None:
        v = read(self.user.path / "interface_uuids") if self.user else None
        return ids.normalize_uuid(v.splitlines()[0]) if v else None

    @property
    def logic_uuid(self) -> str | None:
        v = read(self.user.path / "logic_uuids") if self.user else None
        return ids.normalize_uuid(v.splitlines()[0]) if v else None

    @property
    def xclbin_uuid(self) -> str | None:
        return ids.normalize_uuid(read(self.user.path / "xclbinuuid")) if self.user else None

    @property
    def ready(self) -> bool | None:
        v = read(self.user.path / "ready") if self.user else None
        try:
            return bool(int(v, 0)) if v else None
        except ValueError:
            return None

    @property
    def render_node(self) -> tuple[str, tuple[int, int] | None] | None:
        """(``/dev/dri/renderD<N>``, numbers from its ``dev`` file) of the user PF."""
        p = self._first(self.user, "drm/renderD*")
        return (f"/dev/dri/{p.name}", dev_numbers(read(p / "dev"))) if p else None

    @property
    def mgmt_node(self) -> tuple[str, tuple[int, int] | None] | None:
        """(``/dev/xclmgmt<instance>``, numbers from ``xrt_mgmt/xclmgmt*/dev``) of the mgmt PF."""
        inst = read(self.mgmt.path / "instance") if self.mgmt else None
        if not inst or not inst.isdigit():
            return None
        p = self._first(self.mgmt, f"xrt_mgmt/xclmgmt{inst}")
        return f"/dev/xclmgmt{inst}", dev_numbers(read(p / "dev")) if p else None


def scan_alveo(host_root: Path) -> list[AlveoCard]:
    """Alveo cards with a known id, pairing PFs by domain:bus:device; problems recorded per card."""
    cards: dict[str, AlveoCard] = {}
    for fn in walk_pci(host_root, vendor=ids.XILINX):
        model = ids.ALVEO_DEVICES.get(fn.device or "")
        if model is None:
            continue
        key = fn.bdf.rsplit(".", 1)[0]
        card = cards.setdefault(key, AlveoCard(key, model.board))
        if model.mgmt:
            card.mgmt = fn
        else:
            card.user = fn
    for card in cards.values():
        u = card.user
        if u is None:
            card.problem, card.reason = "no-user-pf", "management PF without user PF (no shell loaded, or golden image)"
        elif u.driver is None:
            card.problem, card.reason = "no-driver", f"user PF {u.bdf} has no driver bound (expected xocl)"
        elif not (u.path / "user_pf").exists() or card.vbnv is None:
            card.problem = "no-shell"
            card.reason = f"user PF {u.bdf} shows no shell (no user_pf/rom.u.*): card not flashed or XRT not ready"
    return [cards[k] for k in sorted(cards)]


def host_has(host_root: Path, path: str) -> bool:
    return os.path.lexists(Path(host_root) / path.lstrip("/"))

"""PCI ids of the FPGA cards this backend serves, and the normal form of FPGA UUIDs.

Sources (docs/fpga.md, "PCI ids"):

* Intel DFL: the ``dfl-pci`` driver's id table, Linux ``drivers/fpga/dfl-pci.c``
  (https://github.com/torvalds/linux/blob/master/drivers/fpga/dfl-pci.c): PAC Arria 10 GX
  09c4 (VF 09c5), PAC N3000 0b30, PAC D5005 0b2b (VF 0b2c), Silicom N5010/N5011 1c2c:1000/1001,
  and the generic DFL id bcce (VF bccf) told apart by subsystem device: 138d D5005 (OFS FIM),
  1770 N6000, 1771 N6001, 17d4 C6100.
* AMD/Xilinx Alveo: XRT's ``xocl``/``xclmgmt`` id tables
  (https://github.com/Xilinx/XRT/blob/master/src/runtime_src/core/pcie/driver/linux/xocl/devices.h):
  management / user PF U200 5000/5001, U250 5004/5005, U280 5008/5009 and 500c/500d, U50 5020/5021.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

INTEL, SILICOM, XILINX = "8086", "1c2c", "10ee"


@dataclass(frozen=True)
class DflBoard:
    """One DFL card model: ``board`` is the short name published as the ``board`` attribute."""

    board: str
    name: str
    vf: bool = False


#: (vendor, device) → board, for ids whose device id alone names the card.
DFL_DEVICES: dict[tuple[str, str], DflBoard] = {
    (INTEL, "09c4"): DflBoard("pac-a10", "Intel PAC Arria 10 GX"),
    (INTEL, "09c5"): DflBoard("pac-a10", "Intel PAC Arria 10 GX", vf=True),
    (INTEL, "0b30"): DflBoard("n3000", "Intel FPGA PAC N3000"),
    (INTEL, "0b2b"): DflBoard("d5005", "Intel FPGA PAC D5005"),
    (INTEL, "0b2c"): DflBoard("d5005", "Intel FPGA PAC D5005", vf=True),
    (SILICOM, "1000"): DflBoard("n5010", "Silicom FPGA SmartNIC N5010"),
    (SILICOM, "1001"): DflBoard("n5011", "Silicom FPGA SmartNIC N5011"),
}
#: The generic DFL ids (Open FPGA Stack FIMs): the subsystem device names the card.
DFL_GENERIC = {"bcce": False, "bccf": True}
DFL_SUBSYSTEMS: dict[str, DflBoard] = {
    "138d": DflBoard("d5005", "Intel FPGA PAC D5005"),
    "1770": DflBoard("n6000", "Intel FPGA SmartNIC N6000-PL"),
    "1771": DflBoard("n6001", "Intel FPGA SmartNIC N6001-PL"),
    "17d4": DflBoard("c6100", "Intel IPU Platform F2000X-PL (C6100)"),
}


def dfl_board(vendor: str | None, device: str | None, subsystem_device: str | None) -> DflBoard | None:
    """The board of a PCI function with these ids, None when it is no DFL card. A generic DFL id
    with an unknown subsystem gives board ``dfl`` (published, named by its ids)."""
    if vendor is None or device is None:
        return None
    known = DFL_DEVICES.get((vendor, device))
    if known is not None:
        return known
    if vendor == INTEL and device in DFL_GENERIC:
        vf = DFL_GENERIC[device]
        sub = DFL_SUBSYSTEMS.get(subsystem_device or "")
        return DflBoard(sub.board, sub.name, vf) if sub else DflBoard("dfl", f"Intel DFL card (subsystem {subsystem_device})", vf)
    return None


@dataclass(frozen=True)
class AlveoModel:
    board: str
    mgmt: bool


#: Xilinx device id → (board, management PF?).
ALVEO_DEVICES: dict[str, AlveoModel] = {
    "5000": AlveoModel("u200", True), "5001": AlveoModel("u200", False),
    "5004": AlveoModel("u250", True), "5005": AlveoModel("u250", False),
    "5008": AlveoModel("u280", True), "5009": AlveoModel("u280", False),
    "500c": AlveoModel("u280", True), "500d": AlveoModel("u280", False),
    "5020": AlveoModel("u50", True), "5021": AlveoModel("u50", False),
}

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
ALL_ONES = "f" * 32
ZERO = "0" * 32


def normalize_uuid(text: str | None) -> str | None:
    """``F3C99413-5081-4aad-bced-07eb84a6d0bb`` or ``f3c9941350814aad...`` → 32 lower-case hex
    digits; None when ``text`` is not a 128-bit id. The DFL sysfs files, GBS metadata, xclbin
    headers and XRT's sysfs files each print ids differently; they are compared in this form."""
    if text is None:
        return None
    s = text.strip().lower().replace("-", "")
    if s.startswith("0x"):
        s = s[2:].rjust(32, "0")
    return s if _HEX32.match(s) else None


def dashed(uuid32: str) -> str:
    """32 hex digits → ``8-4-4-4-12`` form (what XRT's ``xclbinuuid`` shows)."""
    u = uuid32
    return f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"


def fim_version(bitstream_id: str | None) -> str | None:
    """The FIM version ``fpgainfo`` prints (``4.0.1``) from a DFL ``bitstream_id``
    (``0x4010002183c88a9``): bits 59:56, 55:52 and 51:48. None when unreadable."""
    if not bitstream_id:
        return None
    try:
        v = int(bitstream_id, 16) if bitstream_id.lower().startswith("0x") else int(bitstream_id)
    except ValueError:
        return None
    return f"{(v >> 56) & 0xF}.{(v >> 52) & 0xF}.{(v >> 48) & 0xF}"

"""FPGA slots (one DRA device per DFL port / Alveo card) and the Devices published for them.

A *slot* is what a claim gets: a DFL port (on a PF, or on a VF whose FME is the PF's) or a
whole Alveo card (management + user PF). Device names are stable across restarts, resets and
re-enumeration: ``dfl-<domain>-<bus>-<dev>-<fn>-port<id>`` (the PCI function and the port's
``id``) and ``alveo-<domain>-<bus>-<dev>``; never ``dfl-port.<n>`` or ``rom.u.<n>`` instances.

A card present but unusable (no driver, no FIM/shell, no FME) is published with the taint
``fpga.dra-framework.io/unusable=<reason>:NoSchedule`` and an ``unusableReason`` attribute,
instead of being hidden; an error reading one card never stops discovery of the others.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dra_framework.api import (AttributeValue, Device, PciFunction, Taint, TaintEffect, Version,
                               pci_device_name)

from . import ids
from .executor import Target
from .sysfs import AlveoCard, DflFme, DflPort, scan_alveo, scan_dfl

log = logging.getLogger(__name__)
UNUSABLE = "fpga.dra-framework.io/unusable"


@dataclass
class Slot:
    name: str
    family: str                      # "dfl" | "alveo"
    board: str
    fn: PciFunction                  # the function a container uses (port's function, user PF)
    port: DflPort | None = None
    fme: DflFme | None = None
    card: AlveoCard | None = None
    vendor: str = ""
    device_id: str = ""
    board_name: str = ""
    problem: str | None = None
    reason: str = ""
    extra: dict[str, AttributeValue] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The image format this slot loads."""
        return "gbs" if self.family == "dfl" else "xclbin"

    def afu_id(self) -> str | None:
        """The loaded function, read now (DFL ``afu_id``; Alveo ``xclbinuuid``)."""
        if self.port is not None:
            return self.port.afu_id
        return self.card.xclbin_uuid if self.card is not None else None

    def interface_id(self) -> str | None:
        if self.fme is not None:
            return self.fme.interface_id
        return self.card.interface_id if self.card is not None else None

    def target(self) -> Target:
        if self.family == "dfl":
            assert self.port is not None and self.fme is not None
            return Target("dfl", self.name, fme_node=f"/dev/{self.fme.instance}", port_id=self.port.port_id,
                          port_sysfs=str(self.port.path))
        assert self.card is not None and self.card.user is not None
        return Target("alveo", self.name, mgmt_bdf=self.card.mgmt.bdf if self.card.mgmt else "",
                      user_sysfs=str(self.card.user.path))

    def nodes(self, reprogram: bool) -> list[tuple[str, tuple[int, int] | None]]:
        """Host device nodes a container gets: the port (DFL) or render node (Alveo), plus the FME
        or management node when it may reprogram the card itself."""
        out: list[tuple[str, tuple[int, int] | None]] = []
        if self.family == "dfl":
            if self.port is not None:
                out.append((f"/dev/{self.port.instance}", self.port.dev))
            if reprogram and self.fme is not None:
                out.append((f"/dev/{self.fme.instance}", self.fme.dev))
            return out
        assert self.card is not None
        render = self.card.render_node
        if render is not None:
            out.append(render)
        mgmt = self.card.mgmt_node if reprogram else None
        if mgmt is not None:
            out.append(mgmt)
        return out

    def attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = dict(self.fn.standard_attributes())
        if self.fn.numa_node is not None:
            attrs["numaNode"] = self.fn.numa_node
        attrs.update({"family": self.family, "vendor": self.vendor, "deviceID": self.device_id, "board": self.board})
        iface, afu = self.interface_id(), self.afu_id()
        if iface:
            attrs["interfaceId"] = iface
        if afu:
            attrs["afuId"] = afu
        attrs.update(self.extra)
        if self.problem:
            attrs["unusableReason"] = self.reason[:64]
        return attrs

    def device(self) -> Device:
        taints = [Taint(UNUSABLE, self.problem, TaintEffect.NO_SCHEDULE)] if self.problem else []
        data: dict[str, Any] = {"family": self.family, "bdf": self.fn.bdf, "board": self.board}
        if self.port is not None:
            data["portId"] = self.port.port_id
        return Device(self.name, attributes=self.attributes(), taints=taints, data=data)


def dfl_name(bdf: str, port_id: int) -> str:
    return f"{pci_device_name(bdf, 'dfl')}-port{port_id}"


def alveo_name(key: str) -> str:
    return "alveo-" + key.replace(":", "-")


def _dfl_slots(host_root: Path) -> list[Slot]:
    slots: list[Slot] = []
    for f in scan_dfl(host_root):
        fn = f.fn
        common = dict(family="dfl", board=f.board.board, fn=fn, fme=f.fme, vendor=fn.vendor or "",
                      device_id=fn.device or "", board_name=f.board.name)
        try:
            extra: dict[str, AttributeValue] = {}
            if f.fme is not None:
                bid = f.fme.bitstream_id
                if bid:
                    extra["bitstreamId"] = bid
                version = ids.fim_version(bid)
                extra["shell"] = f"{f.board.name} FIM {version}" if version else f.board.name
                if version:
                    extra["fimVersion"] = Version(version)
            if f.problem or not f.ports:
                if f.problem:
                    slots.append(Slot(dfl_name(fn.bdf, 0), problem=f.problem, reason=f.reason, extra=extra, **common))  # type: ignore[arg-type]
                continue
            for port in f.ports:
                s = Slot(dfl_name(fn.bdf, port.port_id), port=port, extra={**extra, "portId": port.port_id}, **common)  # type: ignore[arg-type]
                if s.afu_id() is None:
                    s.problem, s.reason = "no-afu-id", f"{port.instance}: afu_id unreadable (port in reset?)"
                slots.append(s)
        except (OSError, ValueError) as exc:
            slots.append(Slot(dfl_name(fn.bdf, 0), problem="error", reason=f"reading {fn.bdf}: {exc}", **common))  # type: ignore[arg-type]
    return slots


def _alveo_slots(host_root: Path) -> list[Slot]:
    slots: list[Slot] = []
    for card in scan_alveo(host_root):
        fn = card.user or card.mgmt
        assert fn is not None
        s = Slot(alveo_name(card.key), "alveo", card.board, fn, card=card, vendor=fn.vendor or "",
                 device_id=fn.device or "", board_name=f"AMD Alveo {card.board.upper()}",
                 problem=card.problem, reason=card.reason)
        try:
            if not card.problem:
                extra: dict[str, AttributeValue] = {}
                for k, v in (("shell", card.vbnv), ("bitstreamId", card.timestamp), ("serial", card.serial)):
                    if v:
                        extra[k] = v[:64]
                if card.logic_uuid:
                    extra["logicUuid"] = card.logic_uuid
                if card.mgmt is not None:
                    extra["mgmtPciBusID"] = card.mgmt.bdf
                s.extra = extra
                if card.interface_id is None:
                    s.problem, s.reason = "no-interface-id", f"user PF {fn.bdf}: interface_uuids unreadable"
        except (OSError, ValueError) as exc:
            s.problem, s.reason = "error", f"reading {card.key}: {exc}"
        slots.append(s)
    return slots


def scan(host_root: Path) -> list[Slot]:
    """Every FPGA slot under ``host_root``; an exception in one family is logged, not raised."""
    out: list[Slot] = []
    for family, fn in (("DFL", _dfl_slots), ("Alveo", _alveo_slots)):
        try:
            out += fn(Path(host_root))
        except (OSError, ValueError) as exc:
            log.error("FPGA discovery of %s cards failed: %s", family, exc)
    for s in out:
        if s.problem:
            log.warning("FPGA device %s (%s) published tainted %s=%s: %s", s.name, s.fn.bdf, UNUSABLE, s.problem, s.reason)
    return out

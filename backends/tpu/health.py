"""Chip health (docs/tpu.md, "Health"): every ``healthIntervalSeconds`` each chip's device node
and PCI function are checked under the host root. A chip whose node is gone, or that fell off
the bus (its ``/sys/bus/pci/devices/<bdf>`` is gone), taints itself and every device holding it
with ``<driver>/chip-unhealthy=device-file-missing|off-bus:NoSchedule`` and reports them
Unhealthy on the kubelet's health stream (KEP-4680); both clear on the first pass that finds the
chip back. The reference driver's signal is the same file check
(https://github.com/kubernetes-sigs/dra-driver-google-tpu, ``cmd/tpu-dra-kubeletplugin/health_check.go``).
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, Sequence

from dra_framework.api import Device, Health, HealthReport, PciFunction, Taint, TaintEffect

from .discovery import Chip


def chip_problem(host_root: Path, chip: Chip) -> str | None:
    """``off-bus``, ``device-file-missing`` or None (healthy)."""
    if not PciFunction.at(host_root, chip.bdf).exists():
        return "off-bus"
    if not (host_root / chip.path.lstrip("/")).exists():
        return "device-file-missing"
    return None


_MESSAGES = {"off-bus": "TPU chip {bdf} fell off the PCI bus", "device-file-missing": "TPU device file {path} is missing"}


class HealthWatcher:
    """``current()`` returns the chips and devices of the last discovery."""

    def __init__(self, host_root: Path, taint_key: str, interval: float,
                 current: Callable[[], tuple[Sequence[Chip], Sequence[Device]]]) -> None:
        self.host_root, self.key, self.interval, self.current = host_root, taint_key, interval, current
        self.last: dict[str, tuple[str, ...]] = {}

    def reports(self) -> list[HealthReport]:
        """One report per device whose state changed since the last call (all on the first)."""
        chips, devices = self.current()
        problems = {c.index: (p, c) for c in chips if (p := chip_problem(self.host_root, c)) is not None}
        out = []
        for d in devices:
            bad = [(problems[i][0], problems[i][1]) for i in d.data.get("chips", []) if i in problems]
            state = tuple(sorted(f"{p}:{c.bdf}" for p, c in bad))
            if self.last.get(d.name) == state:
                continue
            self.last[d.name] = state
            if not bad:
                out.append(HealthReport(d.name, Health.HEALTHY))
                continue
            value = "off-bus" if any(p == "off-bus" for p, _ in bad) else "device-file-missing"
            message = "; ".join(_MESSAGES[p].format(bdf=c.bdf, path=c.path) for p, c in bad)
            taints = [Taint(self.key, value, TaintEffect.NO_SCHEDULE)]
            out.append(HealthReport(d.name, Health.UNHEALTHY, message=message, taints=taints))
        return out

    async def run(self, report: Callable[[HealthReport], None]) -> None:
        while True:
            for r in await asyncio.to_thread(self.reports):
                report(r)
            await asyncio.sleep(self.interval)

"""Reference counts of GPU-wide settings (time-slice interval) across prepared claims.

Kept in ``<stateDir>/sharing.json`` (``{gpu uuid: {claim uid: interval}}``) so that unprepare,
which only gets the checkpoint, knows whether another prepared claim still relies on the
setting. A setting is reset to Default when its last claim is unprepared.
"""
from __future__ import annotations

import threading
from pathlib import Path

from dra_framework.api import read_json_object, write_json_atomic


class SharingState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        return read_json_object(self.path)

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        write_json_atomic(self.path, data)

    def acquire(self, gpu: str, claim: str, interval: str) -> None:
        with self._lock:
            data = self._read()
            data.setdefault(gpu, {})[claim] = interval
            self._write(data)

    def release(self, gpu: str, claim: str) -> bool:
        """Drop ``claim``'s hold; True when no other claim holds a setting on ``gpu`` (reset it)."""
        with self._lock:
            data = self._read()
            holders = data.get(gpu, {})
            holders.pop(claim, None)
            if holders:
                data[gpu] = holders
            else:
                data.pop(gpu, None)
            self._write(data)
            return not holders

    def holders(self, gpu: str) -> dict[str, str]:
        with self._lock:
            return dict(self._read().get(gpu, {}))


class DeviceUsers:
    """Who uses each physical GPU and how: ``<stateDir>/users.json`` = ``{gpu device name: {holder:
    mode}}``, holder ``<claim uid>`` or ``<claim uid>/<share id>``, mode ``plain`` (CUDA as is),
    ``mps`` (through the MPS control daemon) or ``vfio`` (bound to vfio-pci). The scheduler keeps
    exclusive devices apart; this catches what it cannot see: a share without MPS on a GPU whose
    MPS daemon holds it in EXCLUSIVE_PROCESS mode (or the reverse), and a GPU bound to vfio-pci
    while its NVIDIA device is prepared (after a force-deleted pod)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, device: str, holder: str, mode: str) -> dict[str, str]:
        """Register ``holder``; returns the other holders (before adding)."""
        with self._lock:
            data = read_json_object(self.path)
            others = {h: m for h, m in data.get(device, {}).items() if h != holder}
            data.setdefault(device, {})[holder] = mode
            write_json_atomic(self.path, data)
            return others

    def others(self, device: str, holder: str) -> dict[str, str]:
        with self._lock:
            return {h: m for h, m in read_json_object(self.path).get(device, {}).items() if h != holder}

    def remove(self, device: str, holder: str) -> None:
        with self._lock:
            data = read_json_object(self.path)
            users = data.get(device, {})
            users.pop(holder, None)
            if not users:
                data.pop(device, None)
            write_json_atomic(self.path, data)

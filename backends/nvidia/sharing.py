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

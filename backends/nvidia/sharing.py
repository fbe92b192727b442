"""Reference counts of GPU-wide settings (time-slice interval) across prepared claims.

Kept in ``<stateDir>/sharing.json`` (``{gpu uuid: {claim uid: interval}}``) so that unprepare,
which only gets the checkpoint, knows whether another prepared claim still relies on the
setting. A setting is reset to Default when its last claim is unprepared.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class SharingState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

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

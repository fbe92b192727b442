"""The ``fake`` executor: programs a sample host's sysfs tree instead of a card.

For DFL it sets the port's ``afu_id`` to the image's AFU id, for Alveo the user PF's
``xclbinuuid``; each call is appended to ``<stateDir>/executor.jsonl``. Like a real partial
reconfiguration it is not atomic: the region first reads all-ones (the port is held in reset
while the bitstream streams in), then the new id. A kill point between the two
(``fpga fake-executor mid-write``, docs/testing.md "Kill points") lets crash tests stop the
daemon exactly while a card is half-programmed.

A file ``<stateDir>/executor-fail`` makes every call fail with its content as the message
(a card that rejects the image), after the all-ones write (the region is left unusable, as a
failed PR leaves it).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from dra_framework.testing import killpoint

from ..executor import ProgramError, Target
from ..ids import ALL_ONES, dashed
from ..images import Image


class FakeExecutor:
    def __init__(self, state_dir: Path) -> None:
        self.log_path = Path(state_dir) / "executor.jsonl"
        self.fail_path = Path(state_dir) / "executor-fail"
        self.calls: list[dict[str, object]] = []
        self._lock = threading.Lock()

    def _id_file(self, target: Target) -> tuple[Path, bool]:
        if target.family == "dfl":
            return Path(target.port_sysfs) / "afu_id", False
        return Path(target.user_sysfs) / "xclbinuuid", True

    def program(self, target: Target, image: Image) -> None:
        call = {"time": time.time(), "device": target.device, "family": target.family, "image": image.host_path,
                "sha256": image.sha256, "afuId": image.afu_id, "portId": target.port_id,
                "fmeNode": target.fme_node, "mgmtBdf": target.mgmt_bdf}
        with self._lock:
            self.calls.append(call)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as f:
                f.write(json.dumps(call, sort_keys=True) + "\n")
        path, is_dashed = self._id_file(target)
        if not path.parent.is_dir():
            raise ProgramError(f"{target.device}: {path.parent} is gone (card removed?)")
        path.write_text((dashed(ALL_ONES) if is_dashed else ALL_ONES) + "\n")
        killpoint("fpga fake-executor mid-write")
        if self.fail_path.exists():
            raise ProgramError(f"{target.device}: {self.fail_path.read_text().strip() or 'programming failed'}")
        path.write_text((dashed(image.afu_id) if is_dashed else image.afu_id) + "\n")

"""Commands that change GPU settings (time-slice, compute mode): a replaceable executor.

On a real node :class:`NvidiaSmiExecutor` runs ``nvidia-smi`` from the driver root with the
driver's libnvidia-ml preloaded (as the NVIDIA driver does); tests and demos use
:class:`RecordingExecutor`, which changes nothing and records each command.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Protocol, Sequence

from .config import TIMESLICE_VALUES


class Executor(Protocol):
    def run(self, argv: Sequence[str]) -> None:
        """Run one command; raise RuntimeError with its output on failure."""


def timeslice_cmd(uuid: str, interval: str) -> list[str]:
    return ["nvidia-smi", "compute-policy", "-i", uuid, "--set-timeslice", str(TIMESLICE_VALUES[interval])]


def compute_mode_cmd(uuid: str, mode: str) -> list[str]:
    """``mode``: DEFAULT or EXCLUSIVE_PROCESS."""
    return ["nvidia-smi", "-i", uuid, "-c", mode]


class NvidiaSmiExecutor:
    def __init__(self, nvidia_smi: Path, libnvidia_ml: Path | None, timeout: float = 30.0) -> None:
        self.nvidia_smi, self.lib, self.timeout = nvidia_smi, libnvidia_ml, timeout

    def run(self, argv: Sequence[str]) -> None:
        env = dict(os.environ)
        if self.lib is not None:
            env["LD_PRELOAD"] = str(self.lib)
        cmd = [str(self.nvidia_smi), *argv[1:]] if argv and argv[0] == "nvidia-smi" else list(argv)
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{' '.join(cmd)}: {exc}") from None
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {(out.stdout + out.stderr).strip()}")


class RecordingExecutor:
    """Records commands in ``commands`` and, with ``log_path``, as JSON lines in that file."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.commands: list[list[str]] = []
        self.log_path = log_path
        self.fail: dict[str, str] = {}  # substring of the joined command → error message
        self._lock = threading.Lock()

    def run(self, argv: Sequence[str]) -> None:
        joined = " ".join(argv)
        for needle, msg in self.fail.items():
            if needle in joined:
                raise RuntimeError(f"{joined} failed: {msg}")
        with self._lock:
            self.commands.append(list(argv))
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self.log_path.open("a") as f:
                    f.write(json.dumps(list(argv)) + "\n")

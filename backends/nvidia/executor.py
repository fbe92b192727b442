"""Commands that change GPU settings (time-slice, compute mode) and start the MPS control daemon:
a replaceable executor.

On a real node :class:`NvidiaSmiExecutor` runs ``nvidia-smi`` and ``nvidia-cuda-mps-control``
from the driver root with the driver's libnvidia-ml preloaded (as the NVIDIA driver does); tests
and demos use :class:`RecordingExecutor`, which changes no GPU setting and records each command;
its MPS control daemon is a stand-in process (``fake/mps_control.py``) with the same environment,
so liveness, restarts and stopping are exercised on a real process.

``start`` runs a long-lived process detached from the driver (own session, so a signal to the
driver's process group does not reach it, and it outlives a restart of the driver process);
``run`` waits for a short command, optionally feeding ``input`` on stdin (the MPS control
client reads its commands there).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from .config import TIMESLICE_VALUES


class Executor(Protocol):
    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None) -> None:
        """Run one command (``env`` added to the driver's); raise RuntimeError with its output on failure."""

    def start(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
        """Start a detached long-running process (stdout/stderr to ``log_path``); return its pid."""


def timeslice_cmd(uuid: str, interval: str) -> list[str]:
    return ["nvidia-smi", "compute-policy", "-i", uuid, "--set-timeslice", str(TIMESLICE_VALUES[interval])]


def compute_mode_cmd(uuid: str, mode: str) -> list[str]:
    """``mode``: DEFAULT or EXCLUSIVE_PROCESS."""
    return ["nvidia-smi", "-i", uuid, "-c", mode]


MPS_CONTROL = "nvidia-cuda-mps-control"


def mps_start_cmd() -> list[str]:
    """The control daemon in the foreground (``-f``), so its pid is the process we started."""
    return [MPS_CONTROL, "-f"]


class NvidiaSmiExecutor:
    def __init__(self, nvidia_smi: Path, libnvidia_ml: Path | None, timeout: float = 30.0) -> None:
        self.nvidia_smi, self.lib, self.timeout = nvidia_smi, libnvidia_ml, timeout

    def _cmd(self, argv: Sequence[str], env: Mapping[str, str] | None) -> tuple[list[str], dict[str, str]]:
        full = dict(os.environ)
        full.update(env or {})
        if self.lib is not None:
            full["LD_PRELOAD"] = str(self.lib)
        # the MPS binaries sit next to nvidia-smi in the driver root
        tools = {"nvidia-smi": self.nvidia_smi, MPS_CONTROL: self.nvidia_smi.parent / MPS_CONTROL}
        cmd = [str(tools[argv[0]]), *argv[1:]] if argv and argv[0] in tools else list(argv)
        return cmd, full

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None) -> None:
        cmd, full = self._cmd(argv, env)
        try:
            out = subprocess.run(cmd, env=full, input=input, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{' '.join(cmd)}: {exc}") from None
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {(out.stdout + out.stderr).strip()}")

    def start(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
        cmd, full = self._cmd(argv, env)
        return _spawn(cmd, full, log_path)


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
    except OSError as exc:
        raise RuntimeError(f"{' '.join(cmd)}: {exc}") from None
    # Not waited for here: a reaper thread collects the exit status (no zombie while we run);
    # after a restart of the driver the process is init's child.
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
    return proc.pid


class RecordingExecutor:
    """Records commands in ``commands`` and, with ``log_path``, as JSON lines in that file."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.commands: list[list[str]] = []
        self.log_path = log_path
        self.fail: dict[str, str] = {}  # substring of the joined command → error message
        self._lock = threading.Lock()

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None) -> None:
        cmd = list(argv) + ([f"<<{input.strip()}"] if input else [])
        joined = " ".join(cmd)
        for needle, msg in self.fail.items():
            if needle in joined:
                raise RuntimeError(f"{joined} failed: {msg}")
        self._record(cmd)
        if argv and argv[0] == MPS_CONTROL and input and input.strip() == "quit" and env:
            _quit_fake_daemon(Path(env.get("CUDA_MPS_PIPE_DIRECTORY", "/nonexistent")))

    def start(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
        joined = " ".join(argv)
        for needle, msg in self.fail.items():
            if needle in joined:
                raise RuntimeError(f"{joined} failed: {msg}")
        self._record(list(argv))
        full = {**os.environ, **env}
        return _spawn([sys.executable, "-m", "dra_backends.nvidia.fake.mps_control", *argv[1:]], full, log_path)

    def _record(self, cmd: list[str]) -> None:
        with self._lock:
            self.commands.append(cmd)
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self.log_path.open("a") as f:
                    f.write(json.dumps(cmd) + "\n")


def _quit_fake_daemon(pipe: Path) -> None:
    """The stand-in daemon's ``quit``: it reads its pipe directory's ``quit`` file."""
    try:
        (pipe / "quit").touch()
    except OSError:
        pass

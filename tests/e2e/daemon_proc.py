"""Runs the real ``dra-framework run`` executable for end-to-end tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

EXE = Path(sys.executable).parent / "dra-framework"


class Daemon:
    """``dra-framework run`` as a subprocess; logs in ``log_path`` (printed by failing tests)."""

    def __init__(self, config: dict, workdir: Path, name: str = "daemon", args: tuple[str, ...] = ()) -> None:
        self.args = args
        self.workdir = workdir
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
        self._runs = getattr(self, "_runs", 0) + 1
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(EXE), "-v", "run", "--config", str(self.config_path), *self.args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def restart(self) -> "Daemon":
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_running(self, timeout: float = 60) -> None:
        """Until this run logged that every driver serves (signal handlers are installed by then)."""
        marker = "dra-framework running with"
        wait_for(lambda: self.logs().count(marker) >= self._runs, timeout, "daemon start-up", self)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(pred, timeout: float, what: str, daemon: Daemon | None = None, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"daemon exited while waiting for {what}:\n{daemon.logs()[-4000:]}")
        time.sleep(interval)
    logs = daemon.logs()[-4000:] if daemon else ""
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{logs}")

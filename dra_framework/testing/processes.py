"""Locating the harness binaries and running them: :class:`Process` (a child process with a log
file), :func:`wait_for` (poll with a deadline, failing fast when a watched process died),
:func:`free_port`, :func:`run_tool`. Re-exported by :mod:`dra_framework.testing.k8s`."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

DEFAULT_K8S_VERSION = "1.37.2"
BINARIES = ("etcd", "kube-apiserver", "kubelet-dra-shim", "dra-allocator", "cdi-check")


class HarnessUnavailable(RuntimeError):
    """The harness binaries are not built (or Go is missing); the message says how to fix it."""


# ---------------------------------------------------------------- locating the binaries


def k8s_version() -> str:
    return os.environ.get("DRA_HARNESS_K8S_VERSION", DEFAULT_K8S_VERSION).removeprefix("v")


def cache_root() -> Path:
    if os.environ.get("DRA_HARNESS_CACHE"):
        return Path(os.environ["DRA_HARNESS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "dra-framework" / "harness"


def bin_dir(version: str | None = None) -> Path:
    return cache_root() / f"k8s-{version or k8s_version()}" / "bin"


def find_bins(version: str | None = None) -> Path:
    """The bin dir of ``version``, or :class:`HarnessUnavailable` naming what is missing."""
    d = bin_dir(version)
    missing = [b for b in BINARIES if not os.access(d / b, os.X_OK)]
    if not missing:
        return d
    hint = "run `make harness` (scripts/build-harness.sh)"
    if shutil.which("go") is None:
        hint = "Go is not installed, so the harness cannot be built; install Go 1.26+ and " + hint
    raise HarnessUnavailable(f"Kubernetes harness binaries missing in {d}: {', '.join(missing)}; {hint}")


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose stdout+stderr go to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name, self.args, self.log_path = name, args, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        # Own process group: a Ctrl-C on pytest must not reach the children first, teardown stops them.
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 10) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Watched(Protocol):
    """A process :func:`wait_for` can watch: :class:`Process` or a ``testing.driver.DriverProcess``."""

    name: str

    def check_alive(self) -> None: ...
    def tail(self) -> str: ...


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1,
             proc: Watched | None = None) -> Any:
    """Polls ``predicate`` until it returns a truthy value; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check_alive()
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    logs = f"\n--- {proc.name} log ---\n{proc.tail()}" if proc else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}{logs}")


def pools_complete(slices: list[dict[str, Any]]) -> bool:
    """Whether ``slices`` (raw ResourceSlice JSON, e.g. the ``items`` of a list) hold at least
    one pool and every pool is complete: as many slices at the pool's newest generation as their
    ``spec.pool.resourceSliceCount``. The scheduler's allocator treats devices of an incomplete
    pool as unavailable, so allocate only after this holds
    (https://kubernetes.io/docs/concepts/scheduling-eviction/dynamic-resource-allocation/#resourceslice).
    """
    pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        pools.setdefault((s["spec"]["driver"], s["spec"]["pool"]["name"]), []).append(s["spec"]["pool"])
    for members in pools.values():
        newest = max(int(p.get("generation", 0)) for p in members)
        current = [p for p in members if int(p.get("generation", 0)) == newest]
        if len(current) != int(current[0].get("resourceSliceCount", 1)):
            return False
    return bool(pools)


def run_tool(path: Path, args: Iterable[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=timeout)

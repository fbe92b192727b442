"""The MPS control daemon: one per GPU or static MIG device, shared by the claims on it.

Started by the first prepare whose ``GpuConfig``/``MigDeviceConfig`` says ``strategy: MPS``,
stopped after the last such claim (or share) on the device is unprepared. Everything runs
through the replaceable executor (``executor.py``):

1. full GPU: ``nvidia-smi -i <uuid> -c EXCLUSIVE_PROCESS`` (only the MPS server may use it);
2. ``nvidia-cuda-mps-control -f``, detached, with ``CUDA_VISIBLE_DEVICES=<uuid>`` and the
   daemon's directories ``<mpsRoot>/<device>/{pipe,log,shm}`` (``mpsRoot`` is a host path; the
   plugin sees it under ``hostRoot``);
3. ``set_default_active_thread_percentage`` / ``set_default_device_pinned_mem_limit`` fed to
   ``nvidia-cuda-mps-control`` from the first claim's ``mpsConfig``.

A container gets ``CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps`` with the pipe directory mounted
there and the shm directory as ``/dev/shm``; a consumable share also gets its own
``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=<MiB>M`` (the MPS server enforces it per client) and, from
its config, ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``.

Crash safety: before each step the claim journals ``mps/<device>`` = ``{"holder", "uuid",
"step"}`` (``holder``, ``compute-mode``, ``start``, ``configure``, ``ready``). Holders live in
``<stateDir>/mps.json`` (``{device: {"uuid", "gpu", "holders": {holder: {...}}}}``; a holder is
``<claim uid>`` or ``<claim uid>/<share id>``). :meth:`MpsManager.release` works from the
journal entry alone, whatever step it stopped at: drop the holder; when none is left, quit the
daemon, reset the compute mode, remove the directories. The daemon is found by its environment
(``/proc/<pid>/environ`` holds ``NVIDIA_DRA_MPS_DEVICE=<device>``), never by a stored pid, so a
kill between starting it and recording anything cannot leak it, and a recycled pid cannot be
mistaken for it. A restarted driver finds the running daemon and leaves it alone.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from dra_framework.api import ContainerEdits, Mount, read_json_object, write_json_atomic

from .config import MpsConfig
from .executor import MPS_CONTROL, Executor, compute_mode_cmd, mps_start_cmd
from .shares import q

log = logging.getLogger(__name__)

MARKER = "NVIDIA_DRA_MPS_DEVICE"
STEPS = ("holder", "compute-mode", "start", "configure", "ready")
CONTAINER_PIPE = "/tmp/nvidia-mps"
RW = ("nosuid", "nodev", "rbind", "rprivate")
Record = Callable[[str, Any], Awaitable[None]]


def journal_key(device: str) -> str:
    return f"mps/{device}"


class MpsDaemonDead(RuntimeError):
    """The device's control daemon is gone while claims still use it."""


def find_daemon(device: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of live processes started as ``device``'s control daemon (and the MPS servers it
    spawned, which inherit its environment). Zombies do not count."""
    needle = f"{MARKER}={device}".encode()
    out: list[int] = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return out
    for p in entries:
        if not p.name.isdigit():
            continue
        try:
            if needle not in (p / "environ").read_bytes().split(b"\0"):
                continue
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:].startswith("Z"):
            continue
        out.append(int(p.name))
    return out


class MpsManager:
    def __init__(self, executor: Executor, host_root: Path, mps_root: str, state_path: Path,
                 gpu_responsive: Callable[[str], bool], logger: logging.Logger | None = None,
                 proc: Path = Path("/proc"), stop_timeout: float = 5.0) -> None:
        self.executor, self.host_root, self.mps_root = executor, host_root, mps_root
        self.state_path, self.gpu_responsive, self.proc = state_path, gpu_responsive, proc
        self.log = logger or log
        self.stop_timeout = stop_timeout
        self._file_lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ paths and state
    def host_dir(self, device: str) -> str:
        """The device's directory as the host (and the CDI spec) names it."""
        return f"{self.mps_root.rstrip('/')}/{device}"

    def local_dir(self, device: str) -> Path:
        """The same directory as this process sees it (under hostRoot)."""
        return self.host_root / self.host_dir(device).lstrip("/")

    def daemon_env(self, device: str, uuid: str) -> dict[str, str]:
        d = self.local_dir(device)
        return {"CUDA_VISIBLE_DEVICES": uuid, "CUDA_MPS_PIPE_DIRECTORY": str(d / "pipe"),
                "CUDA_MPS_LOG_DIRECTORY": str(d / "log"), MARKER: device}

    def read(self) -> dict[str, Any]:
        with self._file_lock:
            return read_json_object(self.state_path)

    def _update(self, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with self._file_lock:
            data = read_json_object(self.state_path)
            fn(data)
            write_json_atomic(self.state_path, data)
            return data

    def lock(self, device: str) -> asyncio.Lock:
        return self._locks.setdefault(device, asyncio.Lock())

    def alive(self, device: str) -> bool:
        return bool(find_daemon(device, self.proc))

    def dead_devices(self) -> dict[str, str]:
        """Devices whose daemon should run (holders, started) but does not: device → message."""
        out = {}
        for device, e in self.read().items():
            if e.get("holders") and e.get("started") and not self.alive(device):
                out[device] = (f"MPS control daemon of {device} is not running (log: "
                               f"{self.local_dir(device) / 'log'}); {len(e['holders'])} claim(s) still use it")
        return out

    # ------------------------------------------------------------------ acquire
    async def acquire(self, record: Record, device: str, uuid: str, gpu: str | None, holder: str,
                      conf: MpsConfig | None, share_memory: int | None) -> ContainerEdits:
        """Make ``holder`` a client of ``device``'s daemon, starting it if needed; returns the
        container edits. ``gpu``: the full GPU's uuid whose compute mode is set (None for MIG).
        Raises :class:`MpsDaemonDead` when the daemon died under other claims, RuntimeError when
        a step fails (the journal then lets :meth:`release` undo the part that was done)."""
        key = journal_key(device)
        entry = {"holder": holder, "uuid": uuid, "gpu": gpu}

        async def step(name: str) -> None:
            await record(key, {**entry, "step": name})

        async with self.lock(device):
            current = self.read().get(device) or {}
            others = {h for h in current.get("holders", {}) if h != holder}
            if others and current.get("started") and not await asyncio.to_thread(self.alive, device):
                raise MpsDaemonDead(f"MPS control daemon of {device} is not running (log: "
                                    f"{self.local_dir(device) / 'log'}); it serves {len(others)} other claim(s), "
                                    "which must be unprepared before MPS can be used on this device again")
            await step("holder")

            def add(data: dict[str, Any]) -> None:
                e = data.setdefault(device, {"uuid": uuid, "gpu": gpu, "holders": {}})
                e["holders"][holder] = {"memory": share_memory}
            await asyncio.to_thread(self._update, add)
            if not (current.get("started") and others):
                await self._start(step, device, uuid, gpu, conf)
            await step("ready")
        return self.edits(device, conf, share_memory)

    async def _start(self, step: Callable[[str], Awaitable[None]], device: str, uuid: str, gpu: str | None,
                     conf: MpsConfig | None) -> None:
        if gpu is not None:
            await step("compute-mode")
            await asyncio.to_thread(self.executor.run, compute_mode_cmd(gpu, "EXCLUSIVE_PROCESS"))
        await step("start")
        d = self.local_dir(device)
        for sub in ("pipe", "log", "shm"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        env = self.daemon_env(device, uuid)
        if not await asyncio.to_thread(self.alive, device):  # a retried prepare may find it running
            pid = await asyncio.to_thread(self.executor.start, mps_start_cmd(), env, d / "log" / "daemon.out")
            self.log.info("MPS control daemon for %s (%s) started: pid %d, pipe %s", device, uuid, pid, d / "pipe")

        def started(data: dict[str, Any]) -> None:
            data[device]["started"] = True
        await asyncio.to_thread(self._update, started)
        commands = []
        if conf is not None and conf.default_active_thread_percentage is not None:
            commands.append(f"set_default_active_thread_percentage {conf.default_active_thread_percentage}")
        limit = _pinned_limit(conf, uuid)
        if limit is not None:
            commands.append(f"set_default_device_pinned_mem_limit 0 {limit // (1 << 20)}M")
        if commands:
            await step("configure")
            await asyncio.to_thread(self.executor.run, [MPS_CONTROL], env, "\n".join(commands) + "\n")

    def edits(self, device: str, conf: MpsConfig | None, share_memory: int | None) -> ContainerEdits:
        base = self.host_dir(device)
        env = {"CUDA_MPS_PIPE_DIRECTORY": CONTAINER_PIPE}
        if share_memory is not None:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={max(1, share_memory >> 20)}M"
        return ContainerEdits(env=env, mounts=(Mount(host_path=f"{base}/pipe", container_path=CONTAINER_PIPE, options=RW),
                                               Mount(host_path=f"{base}/shm", container_path="/dev/shm", options=RW)))

    # ------------------------------------------------------------------ release
    async def release(self, entry: Mapping[str, Any], device: str, physically_prepared: bool = True) -> None:
        """Undo what the journal entry ``mps/<device>`` says was (maybe) done for its holder;
        idempotent. Stops the daemon when no holder is left. RuntimeError when it cannot be
        stopped (the kubelet retries the unprepare)."""
        holder = entry.get("holder")
        async with self.lock(device):
            def drop(data: dict[str, Any]) -> None:
                e = data.get(device)
                if e is not None:
                    e.get("holders", {}).pop(holder, None)
            data = await asyncio.to_thread(self._update, drop)
            e = data.get(device)
            if e is not None and e.get("holders"):
                return  # others still use the daemon
            if e is None and entry.get("step") in (None, "holder"):
                return  # killed before anything was written or started
            await self._stop(device, e or dict(entry), physically_prepared)
            await asyncio.to_thread(self._update, lambda d: d.pop(device, None))

    async def _stop(self, device: str, e: Mapping[str, Any], physically_prepared: bool) -> None:
        pids = await asyncio.to_thread(find_daemon, device, self.proc)
        if pids:
            env = self.daemon_env(device, str(e.get("uuid", "")))
            try:
                await asyncio.to_thread(self.executor.run, [MPS_CONTROL], env, "quit\n")
            except RuntimeError as exc:
                self.log.warning("MPS control daemon of %s: quit failed (%s); terminating it", device, exc)
            if not await self._wait_gone(device, self.stop_timeout):
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    for pid in await asyncio.to_thread(find_daemon, device, self.proc):
                        try:
                            os.kill(pid, sig)
                        except ProcessLookupError:
                            pass
                    if await self._wait_gone(device, 2.0):
                        break
                else:
                    raise RuntimeError(f"MPS control daemon of {device} does not stop (pids {pids})")
            self.log.info("MPS control daemon for %s stopped", device)
        gpu = e.get("gpu")
        if gpu and physically_prepared:
            if await asyncio.to_thread(self.gpu_responsive, gpu):
                await asyncio.to_thread(self.executor.run, compute_mode_cmd(gpu, "DEFAULT"))
            else:
                self.log.warning("GPU %s does not answer: compute mode not reset", gpu)
        shutil.rmtree(self.local_dir(device), ignore_errors=True)

    async def _wait_gone(self, device: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(find_daemon, device, self.proc):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def cleanup(self) -> None:
        """Start-up: stop daemons no holder uses any more (a kill during the last release)."""
        for device, e in self.read().items():
            if not e.get("holders"):
                self.log.info("MPS control daemon of %s has no claim left: stopping it", device)
                try:
                    await self.release({"holder": None, **e}, device)
                except RuntimeError as exc:
                    self.log.error("%s", exc)


def _pinned_limit(conf: MpsConfig | None, uuid: str) -> int | None:
    if conf is None:
        return None
    per = conf.default_per_device_pinned_memory_limit
    for key in (uuid, "0"):
        if key in per:
            return q(per[key])
    return q(conf.default_pinned_device_memory_limit) if conf.default_pinned_device_memory_limit is not None else None

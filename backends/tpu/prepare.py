"""What a claim's container gets (docs/tpu.md, "Prepare"): the chips' device nodes and the
environment the TPU runtime (libtpu) reads for the allocated shape, and the checks before it.

Environment, per claim (a claim's devices together must form one published device's chips):

====================================  ==========================================================
``TPU_VISIBLE_CHIPS``                 the chip indexes (``4,5,6,7``)
``TPU_CHIPS_PER_PROCESS_BOUNDS``      the shape's chips per dimension (``2,2,1``)
``TPU_PROCESS_BOUNDS``                processes per dimension: ``1,1,1`` on one host
``TPU_PROCESS_PORT``                  ``basePort`` + first chip index: distinct per sub-slice
``TPU_PROCESS_ADDRESSES``             ``localhost:<port>`` (single host)
``TPU_ACCELERATOR_TYPE``              ``v5litepod-4`` (generation prefix and TensorCores)
``TPU_TOPOLOGY``                      ``2x2``
``TPU_WORKER_ID``                     ``0``, or the TpuConfig's ``workerId`` (multi-host)
``TPU_WORKER_HOSTNAMES``              ``localhost``, or the TpuConfig's ``workerHostnames``
``TPU_SKIP_MDS_QUERY``                ``true``: take all of the above from the environment,
                                      not from the GCE metadata server
====================================  ==========================================================
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import TpuConfig

_CHIP_NODE = re.compile(r"^/dev/(accel\d+|vfio/\d+)$")


def claim_env(data: Sequence[Mapping[str, Any]], config: TpuConfig | None, names: Sequence[str]) -> dict[str, str]:
    """The environment for a claim whose devices' ``data`` (as discovery wrote it) are given.
    ValueError naming the devices when there is more than one (each is one process's shape), or
    when a multi-host device has no TpuConfig."""
    d = data[0]
    chips = sorted(c for x in data for c in x["chips"])
    if len(data) > 1:
        raise ValueError(f"devices {', '.join(names)} of one claim (chips {','.join(map(str, chips))}): a TPU "
                         "claim gets one device, the shape its process runs on; request one device of that "
                         "shape (e.g. topology == '2x2') instead of several")
    env = {
        "TPU_VISIBLE_CHIPS": ",".join(map(str, chips)),
        "TPU_CHIPS_PER_PROCESS_BOUNDS": ",".join(map(str, d["bounds"])),
        "TPU_ACCELERATOR_TYPE": d["acceleratorType"],
        "TPU_TOPOLOGY": d["topology"],
        "TPU_SKIP_MDS_QUERY": "true",
        "TPU_PROCESS_PORT": str(d["port"]),
    }
    if d.get("multiHost"):
        if config is None:
            raise ValueError(f"device {names[0]!r} is one host of a {d['hosts']}-host slice: the claim needs a "
                             "TpuConfig (opaque config) with workerId and workerHostnames")
        env["TPU_PROCESS_BOUNDS"] = ",".join(map(str, d["processBounds"]))
        env["TPU_WORKER_ID"] = str(config.worker_id)
        env["TPU_WORKER_HOSTNAMES"] = ",".join(config.worker_hostnames)
    else:
        env["TPU_PROCESS_BOUNDS"] = "1,1,1"
        env["TPU_PROCESS_ADDRESSES"] = f"localhost:{d['port']}"
        env["TPU_WORKER_ID"] = "0"
        env["TPU_WORKER_HOSTNAMES"] = "localhost"
    return env


def chip_openers(host_root: Path) -> dict[str, list[tuple[int, str]]]:
    """Host path of a chip node → [(pid, command)] of the processes that have it open, from the
    ``/proc/<pid>/fd/*`` links under the host root (as Google's tpu-info finds chip owners).
    Processes that end or cannot be read while scanning are skipped."""
    out: dict[str, list[tuple[int, str]]] = {}
    proc = host_root / "proc"
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        targets = set()
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if _CHIP_NODE.match(target):
                targets.add(target)
        if not targets:
            continue
        try:
            comm = (proc / pid / "comm").read_text().strip()
        except OSError:
            comm = "?"
        for t in targets:
            out.setdefault(t, []).append((int(pid), comm))
    return out


def describe_openers(path: str, openers: list[tuple[int, str]]) -> str:
    procs = ", ".join(f"pid {pid} ({comm})" for pid, comm in sorted(openers))
    return f"{path} is open in {procs}"

"""Device-node numbers for CDI ``deviceNodes``: ``/proc/devices`` majors and ``stat`` of a node.

A CDI device node with only a ``path`` makes the container runtime ``stat`` the host node when
the container is created (docs/backends.md, "Device nodes"); when the node may not exist then
(it is created by the driver later, or the plugin sees the host through a host-root mount), a
backend writes ``type``, ``major`` and ``minor`` itself. These helpers find those numbers.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Literal

from .cdi.edits import DeviceNode


def proc_device_majors(host_root: str | Path = "/", kind: Literal["c", "b"] = "c") -> dict[str, int]:
    """Parse ``<host_root>/proc/devices``: driver name → major number for the "Character
    devices:" (``kind="c"``) or "Block devices:" (``kind="b"``) section. The first entry wins
    for a name listed twice. Returns ``{}`` when the file is missing or unreadable."""
    try:
        text = (Path(host_root) / "proc/devices").read_text()
    except OSError:
        return {}
    header = "Character devices:" if kind == "c" else "Block devices:"
    majors: dict[str, int] = {}
    in_section = False
    for line in text.splitlines():
        parts = line.split(None, 1)
        if not parts:
            continue
        if not parts[0].isdigit():  # a section header
            in_section = line.strip() == header
        elif in_section and len(parts) == 2:
            majors.setdefault(parts[1].strip(), int(parts[0]))
    return majors


def device_numbers(path: str | Path, host_root: str | Path = "/") -> tuple[Literal["c", "b"], int, int] | None:
    """``(type, major, minor)`` of the device node at ``path`` (absolute host path) looked up
    under ``host_root``: ``type`` is ``"c"`` (character) or ``"b"`` (block). Returns None when
    the file is missing or not a device node (a regular file in a fake host tree)."""
    try:
        st = os.stat(Path(host_root) / str(path).lstrip("/"))
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        return "c", os.major(st.st_rdev), os.minor(st.st_rdev)
    if stat.S_ISBLK(st.st_mode):
        return "b", os.major(st.st_rdev), os.minor(st.st_rdev)
    return None


def device_node(path: str, host_root: str | Path = "/", *, major: int | None = None, minor: int | None = None,
                type: Literal["c", "b"] = "c", **fields: Any) -> DeviceNode:
    """A self-contained CDI device node for the host node ``path`` (for example ``/dev/vfio/12``).

    ``type``/``major``/``minor`` come from ``stat`` of ``<host_root>/<path>`` when it is a real
    device node; otherwise from the ``major``/``minor`` arguments (with ``type``, default ``"c"``).
    Other ``DeviceNode`` fields (``host_path``, ``permissions``, ``file_mode``, ``uid``, ``gid``)
    pass through as keywords. Raises ValueError naming the path when neither source gives the
    numbers, so a node the runtime would have to ``stat`` later is never written by accident.
    """
    found = device_numbers(path, host_root)
    if found is not None:
        kind, maj, mnr = found
    elif major is not None and minor is not None:
        kind, maj, mnr = type, major, minor
    else:
        raise ValueError(f"device node {path}: not a device node under host root {host_root} and no "
                         f"major=/minor= given (read them from proc_device_majors() or the driver's docs)")
    return DeviceNode(path=path, type=kind, major=maj, minor=mnr, **fields)

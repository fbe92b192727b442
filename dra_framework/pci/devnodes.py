"""Character-device numbers for CDI device nodes, read under a host root.

A CDI device node with ``type``, ``major`` and ``minor`` is self-contained: the runtime creates it
in the container without stat-ing the host path (the CDI spec's ``deviceNodes``,
https://github.com/cncf-tags/container-device-interface/blob/main/SPEC.md). Numbers come from,
in order:

1. the node itself under the host root, when it is a real character device
   (:func:`dra_framework.devnodes.device_numbers`);
2. ``<hostRoot>/dev/char/<major>:<minor>``: udev's symlinks to every character device node; the
   one whose target is the node gives its numbers (dynamic majors such as ``vfio``'s included);
3. a name from the "Character devices:" section of ``<hostRoot>/proc/devices`` plus a known minor
   (:func:`char_majors`).

Without any of these the node is written with its path only, and the runtime fills the rest in
(unlike :func:`dra_framework.devnodes.device_node`, which refuses): on a node the VFIO group
nodes are real and udev links them from ``/dev/char``, so this happens only on sample hosts.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..cdi.edits import DeviceNode
from ..devnodes import device_numbers, proc_device_majors


def char_majors(host_root: Path | str) -> dict[str, int]:
    """The "Character devices:" section of ``<hostRoot>/proc/devices`` as name → major (the first
    entry wins for a name listed twice); empty when the file is missing or unreadable."""
    return proc_device_majors(host_root, "c")


def char_numbers(host_root: Path | str, path: str) -> tuple[int, int] | None:
    """(major, minor) of the host's character device ``path`` (``/dev/vfio/44``) from the node
    itself or from ``/dev/char``; None when neither tells."""
    root = Path(host_root)
    found = device_numbers(path, root)
    if found is not None and found[0] == "c":
        return found[1], found[2]
    char_dir = root / "dev/char"
    try:
        entries = list(os.scandir(char_dir))
    except OSError:
        return None
    want = os.path.normpath(path)
    for e in entries:
        major, sep, minor = e.name.partition(":")
        if not (sep and major.isdigit() and minor.isdigit()):
            continue
        try:
            target = os.readlink(e.path)
        except OSError:
            continue
        # targets are relative to /dev/char (``../vfio/44``) or absolute host paths
        host_target = target if os.path.isabs(target) else os.path.join("/dev/char", target)
        if os.path.normpath(host_target) == want:
            return int(major), int(minor)
    return None


def char_device_node(host_root: Path | str, path: str, *, major_name: str | None = None,
                     minor: int | None = None, container_path: str | None = None,
                     permissions: str | None = None) -> DeviceNode:
    """A CDI device node for the host's character device ``path`` (seen in the container at
    ``container_path``, default the same path), with ``type: c`` and numbers when they can be
    found (see the module doc; ``major_name`` + ``minor`` is the ``/proc/devices`` fallback), else
    with the path only."""
    nums = char_numbers(host_root, path)
    if nums is None and major_name is not None and minor is not None:
        major = char_majors(host_root).get(major_name)
        nums = None if major is None else (major, minor)
    where = {"path": container_path, "host_path": path} if container_path and container_path != path else {"path": path}
    if nums is None:
        return DeviceNode(**where, permissions=permissions)
    return DeviceNode(**where, type="c", major=nums[0], minor=nums[1], permissions=permissions)

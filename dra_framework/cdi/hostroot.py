"""Host-root transform: rewrite host-side paths seen inside the driver's container to host paths.

A kubelet plugin usually runs in a container that sees the host (or a driver installation) under
some directory, e.g. the host's ``/`` mounted at ``/driver-root``. Backends discover device nodes
and files there (``/driver-root/dev/nvidia0``), but CDI host-side paths are resolved by the
container runtime **on the host**, so they must be written as ``/dev/nvidia0``.

Rule (:func:`apply_host_root`), with ``host_root_map = {container_prefix: host_prefix}``
(e.g. ``{"/driver-root": "/"}``; several entries allowed, the longest matching prefix wins; a
prefix matches whole path components only, so ``/driver-root`` does not match ``/driver-rootfs``):

* **device nodes**: the host-side path is ``host_path`` if set, else ``path``. If it lies under a
  mapped prefix, ``host_path`` becomes the mapped host path; ``path`` (the container path) is
  unchanged. If the result equals ``path``, ``host_path`` is dropped (it defaults to ``path``),
  which keeps cdiVersion lower (``hostPath`` needs 0.5.0, docs/cdi-rules.md#versions).
* **mounts**: ``host_path`` is mapped when under a prefix; ``container_path`` unchanged.
* **hooks**: ``path`` is an executable run by the runtime on the host, so it is mapped too;
  ``args`` and ``env`` are left alone.
* env, GIDs, net devices, intelRdt: unchanged.

Paths not under any prefix are left as they are. Mapped paths are normalized (``posixpath.normpath``).
"""
from __future__ import annotations

import posixpath
from collections.abc import Mapping

from .edits import ContainerEdits, DeviceNode, Hook, Mount

HostRootMap = Mapping[str, str]


def _norm_map(host_root_map: HostRootMap) -> list[tuple[str, str]]:
    out = []
    for cprefix, hprefix in host_root_map.items():
        if not (cprefix.startswith("/") and hprefix.startswith("/")):
            raise ValueError(f"host root map entries must be absolute paths: {cprefix!r} -> {hprefix!r}")
        out.append((posixpath.normpath(cprefix), posixpath.normpath(hprefix)))
    return sorted(out, key=lambda kv: len(kv[0]), reverse=True)


def map_host_path(path: str, host_root_map: HostRootMap) -> str:
    """Map one path seen in the driver container to the host path (rule in the module docstring).
    Returns ``path`` unchanged when no prefix matches. Raises ``ValueError`` for a non-absolute
    map entry."""
    if not path.startswith("/"):
        return path
    norm = posixpath.normpath(path)
    for cprefix, hprefix in _norm_map(host_root_map):
        if cprefix == "/":
            rest = norm
        elif norm == cprefix or norm.startswith(cprefix + "/"):
            rest = norm[len(cprefix):] or "/"
        else:
            continue
        return posixpath.normpath(posixpath.join(hprefix, rest.lstrip("/"))) if rest != "/" else hprefix
    return path


def apply_host_root(edits: ContainerEdits, host_root_map: HostRootMap | None) -> ContainerEdits:
    """Return ``edits`` with host-side paths mapped by ``host_root_map`` (module docstring).
    ``None`` or an empty map returns ``edits`` unchanged."""
    if not host_root_map:
        return edits

    def node(n: DeviceNode) -> DeviceNode:
        src = n.host_path or n.path
        mapped = map_host_path(src, host_root_map)
        if mapped == src and n.host_path is None:
            return n
        return n.model_copy(update={"host_path": None if mapped == n.path else mapped})

    def mount(m: Mount) -> Mount:
        return m.model_copy(update={"host_path": map_host_path(m.host_path, host_root_map)})

    def hook(h: Hook) -> Hook:
        return h.model_copy(update={"path": map_host_path(h.path, host_root_map)})

    return edits.model_copy(update={
        "device_nodes": tuple(node(n) for n in edits.device_nodes),
        "mounts": tuple(mount(m) for m in edits.mounts),
        "hooks": tuple(hook(h) for h in edits.hooks),
    })

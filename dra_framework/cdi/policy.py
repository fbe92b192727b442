"""Checks on the CDI edits a backend returns, before the engine writes a spec (docs/cdi.md).

Two checks, both per backend and device, both failing the prepare with an error that names the
backend, the device and the edit:

* **policy** (:class:`CdiPolicy`, ``drivers[].backends[].cdiPolicy`` in the config): which host
  paths may be device nodes and bind-mount sources, whether mounts may be read-write, which hook
  executables may run, which env variable names may be set. Each backend type declares a default
  (``BaseOptions.default_cdi_policy``); the config replaces it field by field.
* **host paths** (:func:`missing_host_paths`): every host path the edits name (device nodes,
  mount sources, hook executables) exists under the backend's host root when the spec is
  written; a spec naming a missing path would let Prepare succeed for a container that cannot
  start.

Path patterns: an absolute path whose components may use ``fnmatch`` wildcards; a path is
allowed when a pattern matches it or one of its parent directories component by component
(``/dev/nvidia*`` allows ``/dev/nvidia0`` and ``/dev/nvidia-caps/nvidia-cap1``, not
``/dev/sda``; ``/usr/lib`` allows everything below ``/usr/lib``). Paths are normalized first, so
``..`` cannot climb out of an allowed directory.
"""
from __future__ import annotations

import os
import posixpath
import stat
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:  # annotations only: the config model needs this module, not the CDI edits model
    from .edits import ContainerEdits



class CdiPolicy(BaseModel):
    """What a backend's CDI edits may do. The field defaults are the framework's default policy,
    used for backends that declare none: character devices under ``/dev``, no block devices, no
    host mounts, no hooks, any env name except the dynamic loader's ``LD_*``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    device_nodes: tuple[str, ...] = Field(("/dev/*",), alias="deviceNodes",
                                          description="Host path patterns allowed for device nodes.")
    block_devices: bool = Field(False, alias="blockDevices",
                                description="Allow block device nodes (disks) at all.")
    mounts: tuple[str, ...] = Field((), description="Host path patterns allowed as bind-mount sources.")
    read_write_mounts: bool = Field(False, alias="readWriteMounts",
                                    description="Allow mounts without the 'ro' option.")
    hooks: tuple[str, ...] = Field((), description="Host path patterns of hook executables allowed to run.")
    env: tuple[str, ...] = Field(("*",), description="Env variable name patterns allowed.")
    env_deny: tuple[str, ...] = Field(("LD_*",), alias="envDeny",
                                      description="Env variable name patterns refused even when 'env' matches.")

    @field_validator("device_nodes", "mounts", "hooks")
    @classmethod
    def _absolute(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"{p!r}: path patterns must be absolute")
        return v

    def overlay(self, override: "CdiPolicy | None") -> "CdiPolicy":
        """This policy with the fields the admin set in ``override`` replaced."""
        if override is None:
            return self
        return self.model_copy(update={f: getattr(override, f) for f in override.model_fields_set})


def path_allowed(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when a pattern matches ``path`` or a parent of it (module docstring)."""
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    for pattern in patterns:
        pp = [p for p in posixpath.normpath(pattern).split("/") if p]
        if len(pp) <= len(parts) and all(fnmatchcase(a, b) for a, b in zip(parts, pp, strict=False)):
            return True
    return False


def _under(host_root: str | Path, path: str) -> Path:
    return Path(host_root) / posixpath.normpath(path).lstrip("/")


def _host_paths(edits: ContainerEdits) -> list[tuple[str, str]]:
    """(edit label, absolute host path) of every device node, bind-mount source and hook."""
    out = []
    for i, n in enumerate(edits.device_nodes):
        out.append((f"deviceNodes[{i}] {n.path}", n.host_path or n.path))
    for i, m in enumerate(edits.mounts):
        out.append((f"mounts[{i}] {m.host_path} -> {m.container_path}", m.host_path))
    for i, h in enumerate(edits.hooks):
        out.append((f"hooks[{i}] {h.hook_name} {h.path}", h.path))
    # Relative paths are not host paths; the CDI validator rejects them when the spec is built.
    return [(label, p) for label, p in out if p.startswith("/")]


def policy_violations(edits: ContainerEdits, policy: CdiPolicy, host_root: str | Path = "/") -> list[str]:
    """One line per edit ``policy`` refuses (``<edit>: <why>``); empty when all pass."""
    out = []
    for i, n in enumerate(edits.device_nodes):
        host = n.host_path or n.path
        if not host.startswith("/"):
            continue
        label = f"deviceNodes[{i}] {host}"
        if not path_allowed(host, policy.device_nodes):
            out.append(f"{label}: host path not allowed (deviceNodes: {list(policy.device_nodes)})")
        elif not policy.block_devices and (n.type == "b" or (n.type is None and _is_block(_under(host_root, host)))):
            out.append(f"{label}: block devices are not allowed (blockDevices: false)")
    for i, m in enumerate(edits.mounts):
        if not m.host_path.startswith("/"):
            continue
        label = f"mounts[{i}] {m.host_path} -> {m.container_path}"
        if not path_allowed(m.host_path, policy.mounts):
            out.append(f"{label}: host path not allowed as a mount source (mounts: {list(policy.mounts)})")
        elif "ro" not in m.options and not policy.read_write_mounts:
            out.append(f"{label}: read-write mount not allowed (add the 'ro' option, or readWriteMounts: true)")
    for i, h in enumerate(edits.hooks):
        if not path_allowed(h.path, policy.hooks):
            out.append(f"hooks[{i}] {h.hook_name} {h.path}: hook executable not allowed (hooks: {list(policy.hooks)})")
    for name in edits.env:
        if not any(fnmatchcase(name, p) for p in policy.env):
            out.append(f"env {name}: name not allowed (env: {list(policy.env)})")
        elif any(fnmatchcase(name, p) for p in policy.env_deny):
            out.append(f"env {name}: name refused (envDeny: {list(policy.env_deny)})")
    return out


def _is_block(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def missing_host_paths(edits: ContainerEdits, host_root: str | Path, notes: list[str] | None = None) -> list[str]:
    """One line per device node, mount source or hook executable that does not exist under
    ``host_root`` (``<edit>: <path> does not exist``). A symlink counts as existing: it resolves
    on the host, not in the driver's view.

    Fallback: a device node with ``type`` ``c``/``b`` and ``major`` is self-contained, the runtime
    creates it from its numbers without the host node (the CDI library stats the host only
    when they are missing); a missing one is added to ``notes`` instead (log it as a warning)."""
    out = []
    self_contained = {n.host_path or n.path for n in edits.device_nodes if n.type in ("c", "b") and n.major is not None}
    for label, p in _host_paths(edits):
        if os.path.lexists(_under(host_root, p)):
            continue
        if label.startswith("deviceNodes[") and p in self_contained:
            if notes is not None:
                notes.append(f"{label}: {_under(host_root, p)} does not exist; the runtime creates the node from "
                             "its type/major/minor")
            continue
        out.append(f"{label}: {_under(host_root, p)} does not exist")
    return out


def check_edits(edits: ContainerEdits, policy: CdiPolicy, host_root: str | Path,
                notes: list[str] | None = None) -> list[str]:
    """Policy violations, then missing host paths (only for edits the policy allows)."""
    refused = policy_violations(edits, policy, host_root)
    return refused or missing_host_paths(edits, host_root, notes)


__all__ = ["CdiPolicy", "check_edits", "missing_host_paths", "path_allowed", "policy_violations"]

"""Where the host's accelerator type and slice topology come from (docs/tpu.md, "Topology").

Sources, first one that names an accelerator wins, as the reference driver orders them
(https://github.com/kubernetes-sigs/dra-driver-google-tpu, ``cmd/tpu-dra-kubeletplugin/util.go``):

1. the backend options ``acceleratorType`` / ``topology``;
2. the TPU env file the Cloud TPU runtime writes on the host (``/etc/tpu/tpu-env`` under hostRoot):
   YAML-like ``KEY: 'value'`` lines, ``ACCELERATOR_TYPE`` (or ``TYPE``), ``TOPOLOGY``,
   ``CHIPS_PER_HOST_BOUNDS``, ``WORKER_ID``;
3. the Node's labels: canonical ``tpu.google.com/accelerator``, ``/chip-count``, ``/topology`` or
   GKE's ``cloud.google.com/gke-tpu-accelerator``, ``cloud.google.com/gke-accelerator-count``,
   ``cloud.google.com/gke-tpu-topology`` (https://cloud.google.com/kubernetes-engine/docs/concepts/plan-tpus).

Whatever is still unknown comes from the hardware: the chip count found, and for a single host
the topology of that many chips.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from .generations import generation_from_accelerator

LABELS = {
    "accelerator": ("tpu.google.com/accelerator", "cloud.google.com/gke-tpu-accelerator"),
    "chipCount": ("tpu.google.com/chip-count", "cloud.google.com/gke-accelerator-count"),
    "topology": ("tpu.google.com/topology", "cloud.google.com/gke-tpu-topology"),
}
_TOPOLOGY = re.compile(r"^[1-9][0-9]*(x[1-9][0-9]*){1,2}$")


@dataclass
class HostInfo:
    """What the sources say about the host's slice (None: unknown). ``source`` names where it
    came from (``tpu-env file /etc/tpu/tpu-env``, ``node labels``, ``options``)."""

    accelerator: str | None = None
    generation: str | None = None
    topology: str | None = None
    chips: int | None = None
    worker_id: int | None = None
    source: str = "hardware"
    problems: list[str] = field(default_factory=list)


def topology_dims(topology: str) -> tuple[int, int, int]:
    """``2x4`` → (2, 4, 1); ``2x2x4`` → (2, 2, 4). ValueError naming the value when malformed."""
    if not _TOPOLOGY.match(topology):
        raise ValueError(f"topology {topology!r} is not of the form AxB or AxBxC")
    dims = [int(d) for d in topology.split("x")]
    return (dims[0], dims[1], dims[2] if len(dims) == 3 else 1)


def topology_chips(topology: str) -> int:
    return math.prod(topology_dims(topology))


def parse_tpu_env(text: str) -> dict[str, str]:
    """``KEY: 'value'`` lines → {KEY: value} (quotes stripped; other lines ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip() and re.fullmatch(r"[A-Z0-9_]+", key.strip()):
            out[key.strip()] = value.strip().strip("'\"")
    return out


def from_tpu_env(values: Mapping[str, str], where: str) -> HostInfo:
    info = HostInfo(source=f"tpu-env file {where}")
    info.accelerator = values.get("ACCELERATOR_TYPE") or values.get("TYPE") or None
    info.topology = values.get("TOPOLOGY") or None
    bounds = values.get("CHIPS_PER_HOST_BOUNDS")
    if bounds:
        try:
            info.chips = math.prod(int(b) for b in bounds.split(","))
        except ValueError:
            info.problems.append(f"{where}: CHIPS_PER_HOST_BOUNDS {bounds!r} is not a list of integers")
    wid = values.get("WORKER_ID", "")
    info.worker_id = int(wid) if wid.isdigit() else None
    return info


def from_labels(labels: Mapping[str, str], where: str = "node labels") -> HostInfo:
    """Canonical names win over GKE's when both are set."""
    def get(key: str) -> str | None:
        return next((labels[k] for k in LABELS[key] if labels.get(k)), None)

    info = HostInfo(source=where, accelerator=get("accelerator"), topology=get("topology"))
    count = get("chipCount")
    if count is not None:
        if count.isdigit():
            info.chips = int(count)
        else:
            info.problems.append(f"{where}: chip count {count!r} is not an integer")
    return info


def node_labels_from_api(node: str, kubeconfig: str, log: logging.Logger) -> dict[str, str]:
    """The Node's labels from the API server (``kubeconfig``, else ``$KUBECONFIG``, else the
    in-cluster config); empty when it cannot be asked (logged once, never fatal)."""
    try:
        import httpx2
        from lightkube import Client, KubeConfig
        from lightkube.resources.core_v1 import Node

        path = kubeconfig or os.environ.get("DRA_FRAMEWORK_KUBECONFIG") or os.environ.get("KUBECONFIG")
        timeout = httpx2.Timeout(5.0)
        client = Client(KubeConfig.from_file(path), timeout=timeout) if path else Client(timeout=timeout)
        obj = client.get(Node, name=node)
        return dict(obj.metadata.labels or {}) if obj.metadata else {}
    except Exception as exc:  # noqa: BLE001 - any failure means "no labels from the API"
        log.info("TPU topology: node labels of %r not read from the API server: %s", node, exc)
        return {}


def host_info(host_root: Path, tpu_env_file: str, options_accelerator: str | None, options_topology: str | None,
              labels: Callable[[], Mapping[str, str]]) -> HostInfo:
    """The first source that names an accelerator (see the module doc); a source's problems
    (a malformed value) are kept in ``problems`` for the caller to log."""
    if options_accelerator:
        info = HostInfo(source="options", accelerator=options_accelerator, topology=options_topology)
    else:
        env_path = host_root / tpu_env_file.lstrip("/")
        info = HostInfo()
        try:
            info = from_tpu_env(parse_tpu_env(env_path.read_text()), tpu_env_file)
        except OSError:
            pass
        if not info.accelerator:
            found = from_labels(labels())
            if found.accelerator:
                info = found
        if options_topology:
            info.topology = options_topology
    if info.accelerator:
        info.generation = generation_from_accelerator(info.accelerator)
    if info.topology:
        try:
            topology_dims(info.topology)
        except ValueError as exc:
            info.problems.append(f"{info.source}: {exc}")
            info.topology = None
    return info

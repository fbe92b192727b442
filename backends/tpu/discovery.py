"""TPU chips under the host root and the devices published for them (docs/tpu.md, "Devices").

Chips are PCI functions of vendor 0x1ae0 whose device id is in the generation table, in address
order; a chip's ``index`` is its position (what ``TPU_VISIBLE_CHIPS`` counts). One counter set
``tpu-chips`` holds a counter ``chip-<index>`` (value 1) per chip; every device consumes the
counters of its chips, so the allocator never hands out one chip twice:

- ``tpu-<bdf>``: one chip (shape 1x1 / 1x1x1);
- ``tpu-<topology>-<n>``: the n-th group of consecutive chips of a sub-host shape (``tpu-2x2-1`` =
  chips 4-7 of an 8-chip v5e host), published only when its chips share a NUMA node;
- ``tpu-host``: every chip of the host (single host), or the host's part of a multi-host slice
  (then the only device).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dra_framework.api import Capacity, CounterConsumption, CounterSet, Device, PciFunction, pci_device_name, walk_pci

from .generations import GENERATIONS, GOOGLE_VENDOR, NOT_TPU, Generation, Shape, unsupported_name
from .topology import HostInfo, topology_chips, topology_dims

COUNTER_SET = "tpu-chips"
NUMA_ATTR = "dra.net/numaNode"


@dataclass(frozen=True)
class Chip:
    """One TPU chip: ``path`` is its device node as a host path (``/dev/vfio/3``, ``/dev/accel0``)."""

    index: int
    bdf: str
    generation: Generation
    path: str
    numa_node: int | None
    standard: dict[str, str]

    @property
    def name(self) -> str:
        return pci_device_name(self.bdf, "tpu")


@dataclass
class Host:
    """The result of a scan: chips, the host's slice and what was left out (for the log)."""

    chips: list[Chip] = field(default_factory=list)
    generation: Generation | None = None
    info: HostInfo = field(default_factory=HostInfo)
    host_shape: Shape | None = None
    topology: str | None = None
    multi_host: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def hosts(self) -> int:
        """Hosts in the slice (1 unless multi-host)."""
        if not self.multi_host or not self.topology or not self.chips:
            return 1
        return topology_chips(self.topology) // len(self.chips)


def _accel_path(fn: PciFunction, fallback: int) -> str:
    """``/dev/accelN`` of a v4 chip: the class device under the function (``<dev>/accel/accelN``)
    when sysfs shows it, else the N-th chip in address order (as Google's tpu-info assumes)."""
    try:
        names = sorted(n for n in os.listdir(fn.path / "accel") if re.fullmatch(r"accel\d+", n))
    except OSError:
        names = []
    return f"/dev/{names[0]}" if names else f"/dev/accel{fallback}"


def find_chips(host_root: Path) -> tuple[list[Chip], list[str]]:
    """Supported chips in address order and one note per Google function left out."""
    found: list[tuple[PciFunction, Generation]] = []
    notes: list[str] = []
    for fn in walk_pci(host_root, vendor=GOOGLE_VENDOR):
        dev = fn.device or ""
        if dev in NOT_TPU:
            continue  # gVNIC, NVMe: not accelerators
        gen = GENERATIONS.get(dev)
        if gen is None:
            notes.append(f"{fn.bdf}: Google TPU of {unsupported_name(dev, fn.subsystem_device)} is not "
                         "supported by this backend (supported: v4, v5e, v5p, v6e); not published")
            continue
        found.append((fn, gen))
    gens = {g.name for _, g in found}
    if len(gens) > 1:
        notes.append(f"chips of more than one TPU generation on one host ({', '.join(sorted(gens))}); none published")
        return [], notes
    chips: list[Chip] = []
    for i, (fn, gen) in enumerate(found):
        path = fn.vfio_group_path if gen.vfio else _accel_path(fn, i)
        if path is None:
            notes.append(f"{fn.bdf}: {gen.name} chip has no IOMMU group (no /dev/vfio node); not published")
            continue
        chips.append(Chip(len(chips), fn.bdf, gen, path, fn.numa_node, fn.standard_attributes()))
    return chips, notes


def scan(host_root: Path, info: HostInfo) -> Host:
    """Chips plus the host's slice from ``info``, cross-checked with the hardware."""
    chips, notes = find_chips(host_root)
    host = Host(chips=chips, info=info, notes=notes + list(info.problems))
    if not chips:
        return host
    gen = chips[0].generation
    host.generation = gen
    if info.generation and info.generation != gen.name:
        host.notes.append(f"{info.source} says TPU generation {info.generation} ({info.accelerator}), the "
                          f"chips' PCI id says {gen.name}: using {gen.name}")
    expected = info.chips or len(chips)
    if expected != len(chips):
        host.notes.append(f"{info.source} says {expected} chips per host, {len(chips)} found: publishing single "
                          "chips only until they match")
        return host
    host.host_shape = gen.shape(len(chips)) if len(chips) in gen.host_chips else None
    if host.host_shape is None:
        host.notes.append(f"{len(chips)} {gen.name} chips is not a {gen.name} host size "
                          f"({', '.join(map(str, gen.host_chips))}): publishing single chips only")
        return host
    host.topology = info.topology or host.host_shape.topology
    total = topology_chips(host.topology)
    if total % len(chips) or total < len(chips):
        host.notes.append(f"{info.source}: topology {host.topology} does not hold the {len(chips)} chips of this "
                          f"host; using {host.host_shape.topology}")
        host.topology = host.host_shape.topology
    host.multi_host = topology_chips(host.topology) > len(chips)
    return host


def _group_attrs(host: Host, chips: list[Chip], shape: Shape, kind: str) -> dict[str, Any]:
    gen = host.generation
    assert gen is not None
    attrs: dict[str, Any] = {
        "kind": kind, "tpuGen": gen.name, "chipCount": len(chips), "hostChipCount": len(host.chips),
        "topology": shape.topology, "hostTopology": host.topology or "",
        "acceleratorType": gen.accelerator_type(len(chips)),
        "hostAcceleratorType": gen.accelerator_type(topology_chips(host.topology)) if host.topology else "",
        "index": chips[0].index, "chips": ",".join(str(c.index) for c in chips), "multiHost": host.multi_host,
    }
    numas = {c.numa_node for c in chips}
    if len(numas) == 1 and None not in numas:
        attrs["numaNode"] = attrs[NUMA_ATTR] = chips[0].numa_node
    if len(chips) == 1:
        attrs.update(chips[0].standard)
    else:
        roots = {c.standard.get("resource.kubernetes.io/pcieRoot") for c in chips}
        if len(roots) == 1 and None not in roots:
            attrs["resource.kubernetes.io/pcieRoot"] = roots.pop()
    return {k: v for k, v in attrs.items() if v != ""}


def _device(host: Host, name: str, chips: list[Chip], shape: Shape, kind: str, port: int) -> Device:
    gen = host.generation
    assert gen is not None
    data = {"kind": kind, "chips": [c.index for c in chips], "bdfs": [c.bdf for c in chips],
            "paths": [c.path for c in chips], "bounds": list(shape.bounds), "topology": shape.topology,
            "acceleratorType": gen.accelerator_type(len(chips)), "multiHost": host.multi_host,
            "hosts": host.hosts, "sliceTopology": host.topology, "generation": gen.name, "port": port + chips[0].index}
    if host.multi_host and host.topology:
        dims, per = topology_dims(host.topology), shape.bounds
        data["processBounds"] = [d // p if p else 1 for d, p in zip(dims, per, strict=True)]
        data["acceleratorType"] = gen.accelerator_type(topology_chips(host.topology))
        data["topology"] = host.topology
    return Device(name, attributes=_group_attrs(host, chips, shape, kind),
                  capacity={"hbm": Capacity(gen.hbm * len(chips))},
                  consumes_counters=[CounterConsumption(COUNTER_SET, {f"chip-{c.index}": 1 for c in chips})],
                  data=data)


def devices(host: Host, base_port: int) -> tuple[CounterSet | None, list[Device]]:
    """The counter set and the devices of ``host`` (module doc)."""
    if not host.chips or host.generation is None:
        return None, []
    gen = host.generation
    counters = CounterSet(COUNTER_SET, {f"chip-{c.index}": 1 for c in host.chips})
    out: list[Device] = []
    one = gen.shape(1)
    assert one is not None
    if not host.multi_host:
        out += [_device(host, c.name, [c], one, "chip", base_port) for c in host.chips]
    if host.host_shape is None:
        return counters, out
    if not host.multi_host:
        for shape in gen.shapes:
            if shape.chips in (1, host.host_shape.chips) or shape.chips > len(host.chips):
                continue
            for n in range(len(host.chips) // shape.chips):
                group = host.chips[n * shape.chips:(n + 1) * shape.chips]
                if len({c.numa_node for c in group}) > 1:
                    host.notes.append(f"{shape.topology} group {n} (chips {group[0].index}-{group[-1].index}) spans "
                                      "NUMA nodes: not published")
                    continue
                out.append(_device(host, f"tpu-{shape.topology}-{n}", group, shape, "slice", base_port))
    if len(host.chips) > 1 or host.multi_host:
        out.append(_device(host, "tpu-host", host.chips, host.host_shape, "host", base_port))
    return counters, out


def log_notes(host: Host, log: logging.Logger) -> None:
    for note in host.notes:
        log.warning("TPU discovery: %s", note)

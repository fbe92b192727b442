"""Host descriptions for the fake NVML: realistic DGX nodes (8 GPUs each).

A host description is JSON: ``driverVersion``, ``cudaDriverVersion`` (NVML's integer, 12040 =
12.4) and ``gpus[]`` with ``model`` (a key of ``mig_tables.MODELS``), ``uuid``, ``minor``,
``pciBusId``, ``numaNode``, ``pcieRoot``, optional ``migEnabled``, ``migInstances``
(``[{profileId, start}]`` already created at boot), ``supportsEvents`` (default true).
"""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

#: DGX H100 / H200: bus ids as ``nvidia-smi`` shows them on a DGX H100, two NUMA nodes, one PCIe
#: root complex per GPU behind a PCIe switch.
_DGX_H_LAYOUT = [("1b", "15", 0), ("43", "3d", 0), ("52", "4e", 0), ("61", "5d", 0),
                 ("9d", "97", 1), ("c3", "bd", 1), ("d1", "cc", 1), ("df", "dc", 1)]
#: DGX A100: bus ids from k8s-test-infra's mock-nvml-config-a100.yaml; NPS4 NUMA layout.
_DGX_A100_LAYOUT = [("07", "00", 3), ("0f", "00", 3), ("47", "40", 1), ("4e", "40", 1),
                    ("87", "80", 7), ("90", "80", 7), ("b7", "b0", 5), ("bd", "b0", 5)]


def _host(name: str, model: str, layout: list[tuple[str, str, int]], uuid_fn) -> dict[str, Any]:
    return {
        "name": name,
        "driverVersion": "550.54.15",
        "cudaDriverVersion": 12040,
        "gpus": [
            {"model": model, "uuid": uuid_fn(i), "minor": i, "pciBusId": f"0000:{bus}:00.0",
             "numaNode": numa, "pcieRoot": f"pci0000:{root}", "migEnabled": False}
            for i, (bus, root, numa) in enumerate(layout)
        ],
    }


def _uuid5(host: str):
    return lambda i: f"GPU-{uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f'{host}.gpu{i}.example')}"


PRESETS: dict[str, dict[str, Any]] = {
    "dgx-h100": _host("dgx-h100", "H100-SXM5-80GB", _DGX_H_LAYOUT, _uuid5("dgx-h100")),
    "dgx-h200": _host("dgx-h200", "H200-SXM5-141GB", _DGX_H_LAYOUT, _uuid5("dgx-h200")),
    "dgx-a100": _host("dgx-a100", "A100-SXM4-40GB", _DGX_A100_LAYOUT,
                      lambda i: f"GPU-12345678-1234-1234-1234-12345678{i:04d}"),
}

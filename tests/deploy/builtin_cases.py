"""The built-in backends the chart-identity end-to-end test runs (tests/deploy/test_chart_identity.py).

One :class:`BuiltinCase` per built-in backend (an entry point in ``dra_framework.backends``):
the test installs the chart with a node group serving ``config``'s driver, runs the daemon with a
token of the chart's ServiceAccount, creates a claim of the chart's DeviceClass ``device_class``
(plus ``selectors``), allocates it with the scheduler's allocator and prepares/unprepares it
through the kubelet's DRA code. A backend that lands appends its case here and its
DeviceClass(es) to ``deviceClasses`` in deploy/helm/dra-framework/values.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "examples" / "configs"


@dataclass(frozen=True)
class BuiltinCase:
    #: the backend's name in the config (``drivers[].backends[].name``)
    backend: str
    #: composed-driver config (YAML, relative paths against its folder); the first driver with
    #: ``backend`` is used, its other drivers are left out
    config: Path
    #: a DeviceClass the chart creates (values.yaml ``deviceClasses[].name``)
    device_class: str
    #: extra CEL selectors of the claim's one request
    selectors: tuple[str, ...] = ()
    #: devices the request asks for
    count: int = 1
    #: ``module:callable`` simulating hardware on each copied hostRoot, as ``--dra-host`` of the
    #: conformance suite (docs/testing.md), e.g. ``dra_framework.testing.hosttree:FakePciKernel``
    host: str | None = None
    #: what the prepared claim's CDI edits must contain (substrings of the cdi-check result or of
    #: the claim's CDI spec files)
    expect_in_edits: tuple[str, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.device_class}"


CASES: list[BuiltinCase] = [
    BuiltinCase("nvidia", CONFIGS / "nvidia-dgx-h100.yaml", "gpu.nvidia.com",
                selectors=("device.attributes['gpu.nvidia.com'].productName == 'NVIDIA H100 80GB HBM3'",),
                expect_in_edits=("/dev/nvidiactl",)),
    BuiltinCase("nvidia", CONFIGS / "nvidia-dgx-h100.yaml", "mig.nvidia.com",
                selectors=("device.attributes['gpu.nvidia.com'].profile == '1g.10gb'",),
                expect_in_edits=("/dev/nvidia-caps/nvidia-cap",)),
    BuiltinCase("fpga", CONFIGS / "fpga-d5005.yaml", "fpga.dra-framework.io",
                selectors=("device.attributes['fpga.dra-framework.io'].interfaceId == 'd51533adaee65dab80fba44bbf579b68'",),
                expect_in_edits=("/dev/dfl-port.",)),
    BuiltinCase("tpu", CONFIGS / "tpu-v5e-8.yaml", "tpu.dra-framework.io",
                selectors=("device.attributes['tpu.dra-framework.io'].topology == '2x2'",),
                expect_in_edits=("/dev/vfio/vfio", "TPU_CHIPS_PER_PROCESS_BOUNDS=2,2,1")),
]

# sriov_nic: VF 1 of the E810's port 0, handed over as a netdev (CDI netDevices); FakePciKernel
# answers rebinding writes on the copied sample host.
CASES.append(BuiltinCase(
    "sriov-nic", CONFIGS / "sriov-e810.yaml", "sriovnic.dra-framework.io",  # backend name (entry point sriov_nic)
    selectors=("device.attributes['sriovnic.dra-framework.io'].pfName == 'enp23s0f0'",
               "device.attributes['sriovnic.dra-framework.io'].vfID == 1"),
    host="dra_framework.testing.hosttree:FakePciKernel",
    # the env from cdi-check; the netdev name from the spec file (cdi-check prints no netDevices)
    expect_in_edits=("SRIOVNIC_VF_0000_17_01_1=0000:17:01.1", "enp23s0f0v1")))

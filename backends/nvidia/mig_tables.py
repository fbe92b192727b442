"""MIG profile tables of real boards (what real NVML returns), used by the fake NVML and tests.

Sources (backends/nvidia/README.md, "MIG tables"; NVIDIA MIG user guide,
https://docs.nvidia.com/datacenter/tesla/mig-user-guide/):

* A100-SXM4-40GB: go-nvml ``gpus/a100.go`` cross-checked with k8s-test-infra
  ``mock-nvml-config-a100.yaml`` and ``nvidia-smi mig -lgip/-lgipp`` output. Profile *ids* are the
  real ones (19, 20, 15, 14, 9, 5, 0), not go-nvml's enum values.
* H100 80GB HBM3: k8s-test-infra ``mock-nvml-config-h100.mig.yaml`` (citing NVIDIA's MIG user
  guide); placements use 8 memory slices like A100 (go-nvml's H100 placements are wrong).
* H200: same Hopper shapes, SM counts and memory sizes from go-nvml ``gpus/h200.go``, real
  profile names (1g.18gb ... 7g.141gb).

Placements are ``(start, size)`` in memory-slice units: 8 memory slices, 7 compute slices.
"""
from __future__ import annotations

from dataclasses import dataclass

from .nvml_api import GiProfile

MIB = 1 << 20

# NVML_GPU_INSTANCE_PROFILE_* enum values.
GI_1_SLICE, GI_2_SLICE, GI_3_SLICE, GI_4_SLICE, GI_7_SLICE = 0, 1, 2, 3, 4
GI_1_SLICE_REV1, GI_1_SLICE_REV2 = 7, 9
GI_PROFILE_COUNT = 0x12

#: NVML_COMPUTE_INSTANCE_PROFILE_* enum → compute slice count (real CI profile id == enum).
CI_PROFILES: dict[int, int] = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7}


def _p(start_sizes: str) -> tuple[tuple[int, int], ...]:
    """``"0:1 1:1"`` → ((0, 1), (1, 1))."""
    return tuple(tuple(int(x) for x in p.split(":")) for p in start_sizes.split())  # type: ignore[misc]


ONES = "0:1 1:1 2:1 3:1 4:1 5:1 6:1"
TWOS4 = "0:2 2:2 4:2 6:2"
TWOS3 = "0:2 2:2 4:2"


def _prof(enum, pid, name, sc, inst, sm, ce, dec, enc, jpg, ofa, mem, pl) -> GiProfile:
    return GiProfile(enum=enum, id=pid, name=name, slice_count=sc, instance_count=inst, multiprocessors=sm,
                     copy_engines=ce, decoders=dec, encoders=enc, jpeg_engines=jpg, ofa_engines=ofa,
                     memory_mib=mem, placements=_p(pl))


@dataclass(frozen=True)
class BoardModel:
    """One GPU model: what NVML reports for it."""

    key: str
    name: str
    architecture: str
    cuda_compute_capability: tuple[int, int]
    memory_mib: int
    pci_device_id: int
    mig_live_toggle: bool  # Hopper+: MIG mode changes without a GPU reset; Ampere needs a reset
    profiles: tuple[GiProfile, ...]

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB


A100_SXM4_40GB = BoardModel(
    key="A100-SXM4-40GB", name="NVIDIA A100-SXM4-40GB", architecture="Ampere",
    cuda_compute_capability=(8, 0), memory_mib=40960, pci_device_id=0x20B010DE, mig_live_toggle=False,
    profiles=(
        _prof(GI_1_SLICE, 19, "1g.5gb", 1, 7, 14, 1, 0, 0, 0, 0, 4864, ONES),
        _prof(GI_1_SLICE_REV1, 20, "1g.5gb+me", 1, 1, 14, 1, 1, 0, 1, 1, 4864, ONES),
        _prof(GI_1_SLICE_REV2, 15, "1g.10gb", 1, 4, 14, 1, 1, 0, 0, 0, 9856, TWOS4),
        _prof(GI_2_SLICE, 14, "2g.10gb", 2, 3, 28, 2, 1, 0, 0, 0, 9856, TWOS3),
        _prof(GI_3_SLICE, 9, "3g.20gb", 3, 2, 42, 3, 2, 0, 0, 0, 19968, "0:4 4:4"),
        _prof(GI_4_SLICE, 5, "4g.20gb", 4, 1, 56, 4, 2, 0, 0, 0, 19968, "0:4"),
        _prof(GI_7_SLICE, 0, "7g.40gb", 7, 1, 98, 7, 5, 0, 1, 1, 40192, "0:8"),
    ),
)

H100_SXM5_80GB = BoardModel(
    key="H100-SXM5-80GB", name="NVIDIA H100 80GB HBM3", architecture="Hopper",
    cuda_compute_capability=(9, 0), memory_mib=81920, pci_device_id=0x233010DE, mig_live_toggle=True,
    profiles=(
        _prof(GI_1_SLICE, 19, "1g.10gb", 1, 7, 16, 1, 1, 0, 1, 0, 10240, ONES),
        _prof(GI_1_SLICE_REV1, 20, "1g.10gb+me", 1, 1, 16, 1, 1, 0, 1, 1, 10240, ONES),
        _prof(GI_1_SLICE_REV2, 15, "1g.20gb", 1, 4, 16, 1, 1, 0, 1, 0, 20480, TWOS4),
        _prof(GI_2_SLICE, 14, "2g.20gb", 2, 3, 32, 2, 2, 0, 2, 0, 20480, TWOS3),
        _prof(GI_3_SLICE, 9, "3g.40gb", 3, 2, 48, 3, 3, 0, 3, 0, 40960, "0:4 4:4"),
        _prof(GI_4_SLICE, 5, "4g.40gb", 4, 1, 64, 4, 4, 0, 4, 0, 40960, "0:4"),
        _prof(GI_7_SLICE, 0, "7g.80gb", 7, 1, 112, 8, 7, 0, 7, 1, 81920, "0:8"),
    ),
)

H200_SXM5_141GB = BoardModel(
    key="H200-SXM5-141GB", name="NVIDIA H200", architecture="Hopper",
    cuda_compute_capability=(9, 0), memory_mib=144384, pci_device_id=0x233510DE, mig_live_toggle=True,
    profiles=(
        _prof(GI_1_SLICE, 19, "1g.18gb", 1, 7, 16, 1, 1, 0, 1, 0, 18432, ONES),
        _prof(GI_1_SLICE_REV1, 20, "1g.18gb+me", 1, 1, 16, 1, 1, 0, 1, 1, 18432, ONES),
        _prof(GI_1_SLICE_REV2, 15, "1g.35gb", 1, 4, 16, 1, 1, 0, 1, 0, 35840, TWOS4),
        _prof(GI_2_SLICE, 14, "2g.35gb", 2, 3, 32, 2, 2, 0, 2, 0, 35840, TWOS3),
        _prof(GI_3_SLICE, 9, "3g.71gb", 3, 2, 48, 3, 3, 0, 3, 0, 72704, "0:4 4:4"),
        _prof(GI_4_SLICE, 5, "4g.71gb", 4, 1, 64, 4, 4, 0, 4, 0, 72704, "0:4"),
        _prof(GI_7_SLICE, 0, "7g.141gb", 7, 1, 112, 8, 7, 0, 7, 1, 144384, "0:8"),
    ),
)

MODELS: dict[str, BoardModel] = {m.key: m for m in (A100_SXM4_40GB, H100_SXM5_80GB, H200_SXM5_141GB)}


def gi_id_for_placement(start: int, size: int) -> int:
    """The GPU instance id real A100/H100 drivers assign to a placement (the "swizzle id"):
    8 slices → 0, 4 → 1-2, 2 → 3-6, 1 → 7-14. ``nvidia-smi mig -lgi`` shows these."""
    base = {8: 0, 4: 1, 2: 3, 1: 7}[size]
    return base + start // size


def mig_cap_minor(gpu_minor: int, gi_id: int, ci_id: int | None = None) -> int:
    """The nvidia-caps minor of ``gpu<P>/gi<G>[/ci<C>]/access`` as /proc/driver/nvidia-caps/mig-minors
    lists it (config=1, monitor=2, then 9 per GI: the GI's access then ci0..ci7, 15 GIs per GPU)."""
    base = 3 + gpu_minor * 15 * 9 + gi_id * 9
    return base if ci_id is None else base + 1 + ci_id

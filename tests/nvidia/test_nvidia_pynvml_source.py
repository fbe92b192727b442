"""The real adapter calls pynvml (functions patched here: no GPU in CI) and translates results
and error codes; the library is loaded from the driver root."""
from __future__ import annotations

import ctypes

import pynvml
import pytest

from dra_backends.nvidia import nvml_api as api
from dra_backends.nvidia.nvml_api import NvmlError
from dra_backends.nvidia.nvml_source import PynvmlSource, find_library, open_nvml


@pytest.fixture
def nv(monkeypatch):
    def patch(**fns):
        for k, v in fns.items():
            monkeypatch.setattr(pynvml, k, v)
    return patch


def _raise(code):
    def f(*a, **k):
        raise pynvml.NVMLError(code)
    return f


def test_system_maps_fields_and_skips_lost_gpus(nv):
    handles = {0: "h0", 1: None}

    def by_index(i):
        if handles[i] is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return handles[i]

    class Mem:
        total = 85899345920

    class Pci:
        busId = b"00000000:1B:00.0"

    nv(nvmlSystemGetDriverVersion=lambda: "550.54.15", nvmlSystemGetCudaDriverVersion=lambda: 12040,
       nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=by_index,
       nvmlDeviceGetMemoryInfo=lambda h: Mem, nvmlDeviceGetMigMode=lambda h: [0, 1],
       nvmlDeviceGetArchitecture=lambda h: pynvml.NVML_DEVICE_ARCH_HOPPER,
       nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0), nvmlDeviceGetUUID=lambda h: "GPU-abc",
       nvmlDeviceGetMinorNumber=lambda h: 3, nvmlDeviceGetName=lambda h: "NVIDIA H100 80GB HBM3",
       nvmlDeviceGetBrand=lambda h: pynvml.NVML_BRAND_NVIDIA, nvmlDeviceGetPciInfo=lambda h: Pci)
    s = PynvmlSource(None).system()
    assert s.driver_version == "550.54.15" and s.cuda_driver_version == 12040
    (g,) = s.gpus
    assert (g.uuid, g.minor, g.brand, g.architecture, g.pci_bus_id) == ("GPU-abc", 3, "Nvidia", "Hopper", "0000:1b:00.0")
    assert (g.mig_capable, g.mig_enabled, g.mig_pending, g.memory_bytes) == (True, False, True, 85899345920)


def test_gi_profiles_reads_real_ids_and_placements(nv):
    def info(h, enum):
        if enum != 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        i = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
        i.id, i.sliceCount, i.instanceCount, i.multiprocessorCount, i.memorySizeMB = 19, 1, 7, 16, 10240
        i.name = b"MIG 1g.10gb"
        return i

    def placements(h, pid, arr, count_ref):
        assert pid == 19
        for k in range(7):
            arr[k].start, arr[k].size = k, 1
        ctypes.cast(count_ref, ctypes.POINTER(ctypes.c_uint)).contents.value = 7

    nv(nvmlDeviceGetHandleByUUID=lambda u: "h", nvmlDeviceGetGpuInstanceProfileInfo=info,
       nvmlDeviceGetGpuInstancePossiblePlacements=placements)
    (p,) = PynvmlSource(None).gi_profiles("GPU-abc")
    assert (p.enum, p.id, p.name, p.instance_count, p.memory_mib) == (0, 19, "1g.10gb", 7, 10240)
    assert p.placements == tuple((k, 1) for k in range(7))


def test_errors_translated(nv):
    nv(nvmlDeviceGetHandleByUUID=lambda u: "h",
       nvmlDeviceCreateGpuInstanceWithPlacement=_raise(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES))
    src = PynvmlSource(None)
    src._profiles["GPU-abc"] = [api.GiProfile(0, 19, "1g.10gb", 1, 7, 16, 1, 1, 0, 1, 0, 10240, ((0, 1),))]
    with pytest.raises(NvmlError) as e:
        src.create_gpu_instance("GPU-abc", 19, 0)
    assert e.value.code == api.ERROR_INSUFFICIENT_RESOURCES and "Insufficient Resources" in str(e.value)
    nv(nvmlEventSetWait_v2=_raise(pynvml.NVML_ERROR_TIMEOUT))
    assert src.wait_event(object(), 10) is None
    nv(nvmlEventSetWait_v2=_raise(pynvml.NVML_ERROR_GPU_IS_LOST))
    assert src.wait_event(object(), 10).kind == "gpu-lost"


def test_library_search(tmp_path, host):
    assert find_library(host) == host / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert find_library(tmp_path / "nothing") is None
    src = open_nvml("real", host, host, tmp_path)
    assert isinstance(src, PynvmlSource) and src.library == host / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    with pytest.raises(ValueError, match="expected 'real'"):
        open_nvml("mock", host, host, tmp_path)

"""Opaque configs: strict decoding, semantic checks naming the field, type-vs-device checks."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from dra_backends.nvidia.config import GpuConfig, MigDeviceConfig

from nvidia_helpers import Claim, allocated


def _err(cls, data) -> str:
    with pytest.raises(ValidationError) as e:
        cls.model_validate(data)
    return str(e.value)


def test_api_version_and_kinds():
    assert GpuConfig.api_version == MigDeviceConfig.api_version == "resource.nvidia.com/v1beta1"
    assert (GpuConfig.kind, MigDeviceConfig.kind) == ("GpuConfig", "MigDeviceConfig")


def test_valid_configs():
    c = GpuConfig.model_validate({"sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Short"}}})
    assert c.timeslice() == "Short"
    assert GpuConfig.model_validate({"sharing": {"strategy": "TimeSlicing"}}).timeslice() == "Default"
    assert GpuConfig().timeslice() is None
    m = GpuConfig.model_validate({"sharing": {"strategy": "MPS", "mpsConfig": {
        "defaultActiveThreadPercentage": 50, "defaultPinnedDeviceMemoryLimit": "1Gi",
        "defaultPerDevicePinnedMemoryLimit": {"0": "2Gi"}}}})
    assert m.sharing.mps_config.default_active_thread_percentage == 50
    MigDeviceConfig.model_validate({"sharing": {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 0}}})


@pytest.mark.parametrize("cls,data,field", [
    (GpuConfig, {"sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Forever"}}}, "interval"),
    (GpuConfig, {"sharing": {"strategy": "Magic"}}, "strategy"),
    (GpuConfig, {"sharing": {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 101}}},
     "defaultActiveThreadPercentage"),
    (GpuConfig, {"sharing": {"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "512Ki"}}},
     "defaultPinnedDeviceMemoryLimit"),
    (GpuConfig, {"sharing": {"strategy": "MPS", "mpsConfig": {"defaultPerDevicePinnedMemoryLimit": {"GPU-1": "10"}}}},
     "defaultPerDevicePinnedMemoryLimit[GPU-1]"),
    (GpuConfig, {"sharing": {"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "lots"}}},
     "defaultPinnedDeviceMemoryLimit"),
    (GpuConfig, {"sharing": {"strategy": "TimeSlicing", "mpsConfig": {}}}, "mpsConfig"),
    (GpuConfig, {"sharing": {"strategy": "MPS", "timeSlicingConfig": {}}}, "timeSlicingConfig"),
    (GpuConfig, {"sharing": {"strategy": "TimeSlicing", "timeslicingConfig": {}}}, "timeslicingConfig"),
    (GpuConfig, {"sharnig": {}}, "sharnig"),
    (MigDeviceConfig, {"sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}},
     "timeSlicingConfig"),
])
def test_errors_name_the_field(cls, data, field):
    assert field in _err(cls, data)


async def test_validate_config_refuses_wrong_device_type(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    gpu = allocated(drv.device(pool, "gpu-0000-1b-00-0"))
    mig = allocated(drv.device(pool, "gpu-0000-1b-00-0-mig-1g10gb-19-0"))
    # A config of the other device type does not apply (False): the engine skips a claim-wide one
    # and fails a request-scoped one.
    assert await drv.hooks.call("dra_validate_config", config=GpuConfig(), device=mig) is False
    assert await drv.hooks.call("dra_validate_config", config=MigDeviceConfig(), device=gpu) is False
    assert await drv.hooks.call("dra_validate_config", config=GpuConfig(), device=gpu) is True
    # MPS on a full GPU is fine; on a dynamically created MIG device it is refused, naming the field
    mps = GpuConfig.model_validate({"sharing": {"strategy": "MPS"}})
    assert await drv.hooks.call("dra_validate_config", config=mps, device=gpu) is True
    mig_mps = MigDeviceConfig.model_validate({"sharing": {"strategy": "MPS"}})
    with pytest.raises(ValueError, match="sharing.strategy: MPS is not supported on dynamic MIG devices"):
        await drv.hooks.call("dra_validate_config", config=mig_mps, device=mig)
    # a refused config means nothing happened on the node
    claim = Claim(drv, "x", [allocated(gpu.device, configs=[GpuConfig(), MigDeviceConfig()])])
    with pytest.raises(ValueError):
        await claim.prepare()
    assert claim.journal == {} and drv.backend.executor.commands == []


async def test_config_types_hook(driver_factory, host):
    drv = driver_factory(host)
    (types,) = await drv.hooks.call("dra_config_types")
    assert types == [GpuConfig, MigDeviceConfig]

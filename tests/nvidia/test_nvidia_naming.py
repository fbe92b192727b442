"""Device names are DNS labels derived from the PCI address and parse back."""
from __future__ import annotations

import re

import pytest

from dra_backends.nvidia import naming
from dra_backends.nvidia.backend import parse_device_name
from dra_backends.nvidia.mig_tables import MODELS, mig_cap_minor

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def test_gpu_name_from_nvml_bus_id():
    assert naming.gpu_name("00000000:1B:00.0") == "gpu-0000-1b-00-0"
    assert naming.parse_gpu_name("gpu-0000-1b-00-0") == "0000:1b:00.0"
    assert naming.counter_set_name("0000:1b:00.0") == "gpu-0000-1b-00-0-counters"


@pytest.mark.parametrize("model", list(MODELS))
def test_mig_names_round_trip(model):
    for p in MODELS[model].profiles:
        for start, _ in p.placements:
            name = naming.mig_name("0000:df:00.0", p.name, p.id, start)
            assert DNS_LABEL.match(name), name
            assert naming.parse_mig_name(name) == ("0000:df:00.0", naming.profile_label(p.name), p.id, start)
            assert naming.parse_gpu_name(name) is None


def test_plus_me_profiles_and_parse_device_name():
    name = naming.mig_name("0000:07:00.0", "1g.5gb+me", 20, 6)
    assert name == "gpu-0000-07-00-0-mig-1g5gb-me-20-6"
    assert parse_device_name(name) == {"kind": "mig", "bus": "0000:07:00.0", "profile": "1g5gb-me",
                                       "profileId": 20, "start": 6}
    assert parse_device_name("gpu-0000-07-00-0") == {"kind": "gpu", "bus": "0000:07:00.0"}
    assert parse_device_name("acc-0") is None


def test_mig_cap_minor_layout():
    assert mig_cap_minor(0, 0) == 3 and mig_cap_minor(0, 0, 0) == 4 and mig_cap_minor(0, 1) == 12
    assert mig_cap_minor(1, 0) == 3 + 135

"""Fixtures for the sriov-minimal example tests (helpers live in sriov_helpers.py)."""
import pytest
from sriov_helpers import sriov_env

from dra_framework.testing.hosttree import FakePciKernel


@pytest.fixture
def env(tmp_path):
    e = sriov_env(tmp_path)
    with FakePciKernel(e.host_root):
        yield e

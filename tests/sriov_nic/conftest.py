"""Fixtures for the sriov_nic tests (helpers in sriov_nic_helpers.py)."""
import pytest
from sriov_nic_helpers import build_host

from dra_framework.testing.hosttree import FakePciKernel


@pytest.fixture
def e810(tmp_path):
    """A fresh copy of the sriov-e810 sample host, with FakePciKernel answering rebinding writes."""
    root = build_host("e810", tmp_path / "e810")
    with FakePciKernel(root) as kernel:
        kernel.root = root
        yield kernel


@pytest.fixture
def cx6dx(tmp_path):
    root = build_host("cx6dx", tmp_path / "cx6dx")
    with FakePciKernel(root) as kernel:
        kernel.root = root
        yield kernel

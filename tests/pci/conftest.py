"""Fixtures for the PCI kit tests (helpers live in pci_helpers.py)."""
from pathlib import Path

import pytest
from pci_helpers import load_sample_host_module


@pytest.fixture
def e810(tmp_path) -> Path:
    """A fresh copy of the sriov-e810 sample host (tests may rebind its devices)."""
    return load_sample_host_module().build(tmp_path / "host")

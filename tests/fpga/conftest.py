"""Fixtures for the fpga backend tests (helpers live in fpga_helpers.py)."""
import pytest
from fpga_helpers import fpga_env


@pytest.fixture
def env(tmp_path):
    return fpga_env(tmp_path)

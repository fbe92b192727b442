"""Fixtures for the NVIDIA backend tests (helpers live in nvidia_helpers.py)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dra_framework.plugins import Registry

from nvidia_helpers import SAMPLE_HOST, Driver, make_driver


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry()


@pytest.fixture
def host(tmp_path) -> Path:
    dst = tmp_path / "host"
    shutil.copytree(SAMPLE_HOST, dst, symlinks=True)
    return dst


@pytest.fixture
def driver_factory(registry, tmp_path):
    def make(host_root: Path, state: str = "state", **options: Any) -> Driver:
        return make_driver(registry, tmp_path, host_root, state, **options)
    return make

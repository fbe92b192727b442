"""`make demo` (scripts/demo.py), the README's first command, runs to the end on the bundled
DGX-H100 sample host; and the pool-completeness check it waits on before allocating."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dra_framework.testing import pools_complete

ROOT = Path(__file__).resolve().parents[2]


def _slice(pool: str, count: int, generation: int = 1, driver: str = "gpu.nvidia.com") -> dict:
    return {"spec": {"driver": driver, "pool": {"name": pool, "generation": generation, "resourceSliceCount": count}}}


def test_a_pool_is_complete_only_with_all_slices_of_its_newest_generation():
    assert not pools_complete([])
    assert not pools_complete([_slice("node", 4)])                      # the first of 4 slices published
    assert pools_complete([_slice("node", 4)] * 4)
    assert not pools_complete([_slice("node", 2, 1)] * 2 + [_slice("node", 2, 2)])   # mid-update
    assert pools_complete([_slice("node", 2, 1)] * 2 + [_slice("node", 1, 2)])      # newer generation done
    assert not pools_complete([_slice("node", 1), _slice("other", 2)])


@pytest.mark.k8s
def test_demo_runs_to_the_end(harness_bins, k8s_version):
    """Before the fix the demo allocated as soon as the first of the pool's slices appeared, and the
    allocator failed ('a pool is incomplete') whenever the rest were not published yet."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--seconds", "0.5"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "allocator chose gpu-" in out and "-mig-1g10gb-" in out, out[-4000:]
    assert "Traceback" not in out
    assert "unprepared: the MIG instance is destroyed" in out, out[-4000:]

"""benchmarks/vs_go.py keeps working: a --quick run builds the Go driver, runs both drivers
against one apiserver and reports every figure for both sides (benchmarks/README.md)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("go") is None, reason="the Go driver of the benchmark needs Go")
def test_vs_go_quick_run_reports_every_figure(harness_bins, tmp_path):
    out = tmp_path / "result.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/vs_go.py"), "--quick", "--json", str(out),
                        "--disk-dir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    figures = {f["figure"]: f for f in json.loads(out.read_text())["figures"]}
    for name in ("prepare p50 ms, tmpfs", "prepare p99 ms, tmpfs", "unprepare p50 ms, tmpfs",
                 "CPU s per 1000 prepares, tmpfs", "prepare claims/s, 1 caller(s), tmpfs",
                 "prepare claims/s, 32 caller(s), tmpfs", "empty RPC p50 ms (unprepare of an unknown UID)",
                 "RSS MiB after 1,000 cycles", "process start to GetInfo answered, ms",
                 "ResourceSlice publish of a 30-device pool, ms"):
        assert name in figures, (name, sorted(figures))
        assert figures[name]["python"] is not None and figures[name]["go"] is not None, figures[name]
    assert "| prepare p50 ms, tmpfs |" in r.stdout

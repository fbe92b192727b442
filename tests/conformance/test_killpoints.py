"""The kill-point mechanism (dra_framework.killpoints): env-driven SIGKILL at the N-th point."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from dra_framework.testing import KILL_AT, KILL_LOG, read_kill_log

SCRIPT = "from dra_framework.killpoints import killpoint\nfor i in range(5):\n    killpoint(f'point {i}')\nprint('done')"


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (KILL_AT, KILL_LOG)}
    return subprocess.run([sys.executable, "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


def test_kill_at_the_nth_point_logs_the_points_reached(tmp_path):
    log = tmp_path / "points"
    r = run({KILL_AT: "3", KILL_LOG: str(log)})
    assert r.returncode == -signal.SIGKILL, r
    assert "done" not in r.stdout
    assert read_kill_log(log) == ["point 0", "point 1", "point 2"]
    assert "killing myself at point 2" in r.stderr


def test_log_only_counts_every_point_and_kills_nothing(tmp_path):
    log = tmp_path / "points"
    r = run({KILL_LOG: str(log)})
    assert r.returncode == 0 and "done" in r.stdout
    assert read_kill_log(log) == [f"point {i}" for i in range(5)]


def test_without_the_variables_nothing_happens(tmp_path):
    r = run({})
    assert r.returncode == 0 and "done" in r.stdout
    assert read_kill_log(tmp_path / "missing") == []

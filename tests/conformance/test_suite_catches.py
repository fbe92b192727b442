"""The conformance suite fails a backend for each defect it checks, and names it: run with
``--dra-conformance`` (a pytest subprocess, as a vendor runs it) against a backend with defects."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.k8s
HERE = Path(__file__).parent


def install(site: Path) -> None:
    site.mkdir()
    shutil.copy(HERE / "broken_backend.py", site / "broken_backend.py")
    dist = site / "broken_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dra_framework.backends]\nbroken = broken_backend\n")


def run_suite(tmp_path: Path, options: dict, *args: str) -> tuple[dict[str, str], str]:
    """Run the suite for backend ``broken`` with ``options``; ``({test name: outcome}, output)``."""
    site = tmp_path / "site"
    install(site)
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(yaml.safe_dump({"drivers": [{"name": "broken.dra.dev",
                                                "backends": [{"name": "broken", "options": options}]}]}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
                        "--dra-conformance=broken", f"--dra-config={cfg}", "--dra-kill-sample=0", *args],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    outcomes = {}
    for line in r.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "SKIPPED") and "::" in rest:
            outcomes[rest.split("::")[1].split(" ")[0]] = word
    return outcomes, r.stdout + r.stderr


def test_suite_catches_unstable_names_leaks_and_lenient_configs(tmp_path):
    outcomes, out = run_suite(tmp_path, {"unstableNames": True, "leak": True, "lenientConfig": True},
                              "-k", "not kill9")
    assert outcomes.get("test_device_names_are_stable_on_rediscovery") == "FAILED", out
    assert "rediscovery changed the devices" in out
    assert outcomes.get("test_prepare_and_unprepare_are_idempotent") == "FAILED", out
    assert "left something behind" in out and "broken.dra.dev/broken/claims/" in out
    assert outcomes.get("test_unknown_field_in_own_opaque_config_is_an_error_naming_it") == "FAILED", out
    assert "broken.dra.dev/v1 BrokenConfig with an unknown field was accepted" in out
    # What the backend does right still passes.
    for ok in ("test_discovery_is_valid", "test_every_device_is_allocatable",
               "test_slices_accepted_and_names_stable_across_runs"):
        assert outcomes.get(ok) == "PASSED", (ok, out)


def test_suite_catches_a_side_effect_before_its_record(tmp_path):
    outcomes, out = run_suite(tmp_path, {"actBeforeRecord": True}, "-k", "kill9 or idempotent")
    assert outcomes.get("test_prepare_and_unprepare_are_idempotent") == "PASSED", out  # fine without a crash
    assert outcomes.get("test_kill9_at_kill_points_then_restart_leaves_nothing_behind") == "FAILED", out
    assert "(before-record broken marker) left something behind" in out, out

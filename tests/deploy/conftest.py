"""Fixtures of the chart tests: the Helm CLI (scripts/build-helm.sh) and, for this folder, a
kube-apiserver that writes an audit log of every ServiceAccount request."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart import AUDIT_POLICY, helm_path  # noqa: E402

@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The Helm CLI built by scripts/build-helm.sh; skip (fail with CI=true) when it is missing."""
    p = helm_path()
    if not os.access(p, os.X_OK):
        msg = f"helm missing at {p}: run scripts/build-helm.sh (Go and the module proxy needed)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return p

@pytest.fixture(scope="module")
def kube_apiserver(harness_bins: Path, k8s_version: str, tmp_path_factory: pytest.TempPathFactory):
    """The harness control plane plus an audit log (``.audit_log``) of every request a
    ServiceAccount makes (Metadata level: verb, resource, subresource, name, response code)."""
    from dra_framework.testing import k8s

    work = tmp_path_factory.mktemp("kube-apiserver-audited")
    policy = work / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    log = work / "audit.log"
    cp = k8s.ControlPlane(harness_bins, work, k8s_version, apiserver_args=[
        f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-mode=blocking",
        "--audit-log-format=json", "--audit-log-maxbackup=1", "--audit-log-maxsize=500"])
    try:
        cp.start()
    except Exception as e:  # noqa: BLE001 - reported with the logs
        cp.stop()
        pytest.fail(f"control plane did not start: {e}\n{cp.logs()}", pytrace=False)
    cp.audit_log = log  # type: ignore[attr-defined]
    yield cp
    cp.stop()

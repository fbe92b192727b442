"""CDI spec files of several drivers on one node, through the real ``dra-framework run``: a config
whose drivers would share a CDI kind or spec file names is refused; start-up cleanup removes only
this driver's stale specs."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from daemon_proc import EXE, Daemon


def test_run_refuses_two_drivers_with_one_cdi_kind(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"nodeName": "n", "cdiRoot": str(tmp_path / "cdi"), "drivers": [
        {"name": n, "cdiVendor": "k8s.shared.dev", "backends": [{"name": "example", "options": {"count": 1}}]}
        for n in ("one.dra.dev", "two.dra.dev")]}))
    r = subprocess.run([str(EXE), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "drivers[1].cdiVendor: CDI kind k8s.shared.dev/claim of driver two.dra.dev is already used by " \
           "driver one.dra.dev" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "cdi").exists()


def _spec(kind: str, uid: str) -> str:
    return json.dumps({"cdiVersion": "0.5.0", "kind": kind,
                       "devices": [{"name": f"{uid}-acc-0", "containerEdits": {"env": ["A=1"]}}]})


@pytest.mark.k8s
def test_startup_cleanup_keeps_other_drivers_specs(kube_apiserver, kubelet_shim, tmp_path):
    node = "cdi-files"
    shim = kubelet_shim(node)
    cdi = tmp_path / "cdi"
    daemon = Daemon({"nodeName": node, "kubeletRootDir": str(shim.root), "cdiRoot": str(cdi),
                     "stateDir": str(tmp_path / "state"), "kubeconfig": str(kube_apiserver.kubeconfig),
                     "drivers": [{"name": "one.dra.dev", "cdiVendor": "k8s.shared", "cdiClass": "b-cd",
                                  "backends": [{"name": "example", "options": {"count": 1}}]}]}, tmp_path)
    try:
        # An (empty) checkpoint: without one, specs are kept as possibly in use by the kubelet.
        from dra_framework.engine.checkpoint import checkpoint_path, encode, read_boot_id
        cp = checkpoint_path(shim.root, "one.dra.dev")
        cp.parent.mkdir(parents=True)
        cp.write_bytes(encode({}, read_boot_id()))
        cdi.mkdir()
        stale = "11111111-0000-0000-0000-000000000001"
        foreign = "11111111-0000-0000-0000-000000000002"
        other = "11111111-0000-0000-0000-000000000003"
        # Ours (k8s.shared/b-cd) but no claim in our checkpoint: removed.
        (cdi / f"k8s.shared-b-cd_{stale}.json").write_text(_spec("k8s.shared/b-cd", stale))
        # Same file name pattern, another kind (another process's driver): kept.
        (cdi / f"k8s.shared-b-cd_{foreign}.json").write_text(_spec("k8s.shared-b/cd", foreign))
        # Another driver's default-named spec: kept.
        (cdi / f"k8s.other.dev-claim_{other}.json").write_text(_spec("k8s.other.dev/claim", other))
        daemon.start()
        shim.wait_registered("one.dra.dev", timeout=60)
        daemon.wait_running()
        assert sorted(p.name for p in cdi.glob("*.json")) == sorted(
            [f"k8s.shared-b-cd_{foreign}.json", f"k8s.other.dev-claim_{other}.json"]), daemon.logs()
    finally:
        assert daemon.stop() == 0, daemon.logs()

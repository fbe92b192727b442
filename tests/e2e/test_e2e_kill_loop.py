"""kill -9 of the real daemon at kill points of prepare and unprepare, over the example and the
NVIDIA backend, then restart and the kubelet's recovery: nothing is left behind (checkpoint, CDI
specs, partition markers, MIG instances of the fake NVML, temp files). A smaller version of
``benchmarks/kill_loop.py`` (every kill point of all scenarios, 200+ kills)."""
from __future__ import annotations

import pytest

from kill_loop import EXAMPLE, NVIDIA, KillLoop

pytestmark = pytest.mark.k8s


def test_kill9_at_kill_points_leaves_nothing_behind(kube_apiserver, tmp_path):
    loop = KillLoop(kube_apiserver.kubeconfig, kube_apiserver.client(), tmp_path / "node", log=lambda line: None)
    loop.start()
    try:
        migs, gpu = loop.nvidia_devices()
        ex = loop.make_claim(EXAMPLE, "ex", ["acc-0-half-0", "acc-0-half-1", "acc-1"])
        nv = loop.make_claim(NVIDIA, "nv", [*migs, gpu])
        assert loop.run_scenario(ex, "delete") == 13       # every kill point of the example claim
        assert loop.run_scenario(nv, "retry", step=3) == 9  # every third one of the NVIDIA claim
    finally:
        loop.stop()
    assert loop.stats.leaks == []
    assert loop.stats.points.get("after dra_create_partition example") == 3


def test_deleted_checkpoint_keeps_prepared_claims(kube_apiserver, tmp_path):
    """checkpoint.json deleted while a MIG claim and an example claim are prepared, then a normal
    restart: the claims' CDI specs stay, the MIG instances and the partition marker are kept (not
    torn down as unowned under unownedMigPolicy destroy), the loss is reported; the kubelet's
    unprepare then removes everything."""
    loop = KillLoop(kube_apiserver.kubeconfig, kube_apiserver.client(), tmp_path / "node", log=lambda line: None,
                    mig_policy="destroy")
    loop.start()
    try:
        migs, gpu = loop.nvidia_devices()
        ex = loop.make_claim(EXAMPLE, "ex-lost", ["acc-0-half-0", "acc-1"])
        nv = loop.make_claim(NVIDIA, "nv-lost", [*migs, gpu])
        for c in (ex, nv):
            assert loop._call("prepare", c) == ""
        specs, markers, gis = loop.claim_specs(), loop.markers(), loop.gpu_instances()
        assert len(specs) == 2 and markers == ["acc-0-half-0"] and len(gis) == 2
        loop.stop()
        for d in (EXAMPLE, NVIDIA):
            loop.daemon.checkpoint_path(d).unlink()
        loop.daemon.start().wait_running(120)
        assert (loop.claim_specs(), loop.markers(), loop.gpu_instances()) == (specs, markers, gis)
        for d, c in ((EXAMPLE, ex), (NVIDIA, nv)):
            assert loop.checkpoint(d)[c["uid"]]["state"] == "Recovered"
        missing = [ln for ln in loop.daemon.logs().splitlines() if "is missing, but CDI specs of 1 prepared" in ln]
        assert all(any(c["uid"] in ln for ln in missing) for c in (ex, nv)), loop.daemon.tail()
        for c in (ex, nv):
            assert loop._call("unprepare", c) == ""
        assert loop.leftovers() == []
    finally:
        loop.stop()

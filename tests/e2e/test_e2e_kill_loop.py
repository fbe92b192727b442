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

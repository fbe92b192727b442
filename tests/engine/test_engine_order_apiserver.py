"""Per-claim ordering against a real kube-apiserver: the claim fetch of a Prepare is held in a
pausable proxy while an Unprepare of the same claim arrives."""
from __future__ import annotations

import asyncio
import time

import pytest
from engine_support import DRIVER, NODE, queued, wait_for

from dra_framework.engine import lightkube_claim_getter
from dra_framework.kubelet.types import ClaimRef
from dra_framework.testing import PausableProxy

pytestmark = pytest.mark.k8s


@pytest.fixture
def allocated_claim(k8s_objects, allocator):
    def make(name: str) -> ClaimRef:
        claim = k8s_objects.resource_claim("default", name, {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "order-gpu"}}]}})
        allocator.allocate("default", name, NODE)
        return ClaimRef(uid=claim["metadata"]["uid"], namespace="default", name=name)
    k8s_objects.node(NODE)
    k8s_objects.resource_slice({"driver": DRIVER, "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
                                "nodeName": NODE, "devices": [{"name": "dev-0"}]})
    k8s_objects.device_class("order-gpu", DRIVER)
    return make


async def test_unprepare_during_a_held_claim_fetch(kube_apiserver, allocated_claim, fake_env, tmp_path):
    """The kubelet's Unprepare arrives while the Prepare's GET of the claim hangs in the API
    server: the Unprepare answers only after the Prepare, and nothing of the claim is left."""
    from lightkube import AsyncClient, KubeConfig

    ref = allocated_claim("held")
    proxy = await PausableProxy.for_url(kube_apiserver.url)
    api = AsyncClient(KubeConfig.from_file(str(proxy.kubeconfig(kube_apiserver.kubeconfig, tmp_path / "kc"))))
    try:
        engine = await fake_env.make_engine()
        engine.get_claim = lightkube_claim_getter(api)
        proxy.pause()
        prep = asyncio.ensure_future(engine.prepare([ref]))
        await proxy.held.wait()
        unprep = asyncio.ensure_future(engine.unprepare([ref]))
        await wait_for(lambda: unprep.done() or queued(engine, ref.uid) == 2)
        proxy.resume()
        assert (await prep)[ref.uid].error == ""
        assert await unprep == {ref.uid: ""}
        assert engine.checkpoint.get(ref.uid) is None and fake_env.cdi_files() == []
        assert [c[0] for c in fake_env.instances["fake"].calls] == ["prepare", "unprepare"]

        # the same with the kubelet's deadline passing while the fetch hangs: dropped, no trace
        proxy.pause()
        late = asyncio.ensure_future(engine.prepare([ref], deadline=time.monotonic() + 0.3))
        await proxy.held.wait()
        unprep = asyncio.ensure_future(engine.unprepare([ref]))
        assert "deadline" in (await late)[ref.uid].error
        assert await unprep == {ref.uid: ""}
        proxy.resume()
        assert engine.checkpoint.get(ref.uid) is None and fake_env.cdi_files() == []
        assert len(fake_env.instances["fake"].calls) == 2
    finally:
        proxy.resume()
        await api.close()
        await proxy.close()

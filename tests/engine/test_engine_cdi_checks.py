"""Prepare never reports success for a CDI spec a container cannot start with, nor for edits the
backend's CDI policy refuses: the claim fails with an error naming backend, device and edit,
nothing is written and the backend's work is rolled back; a retry succeeds once fixed."""
from __future__ import annotations

from dra_framework import hookimpl
from dra_framework.cdi.edits import Hook
from dra_framework.cdi.policy import CdiPolicy
from dra_framework.model import ContainerEdits, DeviceNode, Mount, PreparedDeviceEdits, PrepareResult
from engine_support import Env, FakeBackend


class EditsBackend(FakeBackend):
    """Returns ``self.edits`` for every device."""

    edits = ContainerEdits()

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        self.calls.append(("prepare", ctx.claim.uid, [d.name for d in devices]))
        return PrepareResult(devices={d.name: PreparedDeviceEdits(self.edits) for d in devices},
                             teardown={"t": 1})


async def test_missing_device_node_fails_retriably_then_succeeds(tmp_path):
    env = Env(tmp_path, [("acc", lambda ctx: EditsBackend(ctx))])
    engine = await env.make_engine()
    env.instances["acc"].edits = ContainerEdits(device_nodes=(DeviceNode(path="/dev/acc0"),))
    ref = env.add_claim("c", [{"request": "r", "device": "dev-0"}])
    out = (await engine.prepare([ref]))[ref.uid]
    assert out.error == (f"claim default/c: the CDI spec would not be usable (retriable): backend acc, device dev-0: "
                         f"CDI deviceNodes[0] /dev/acc0: {env.host_root}/dev/acc0 does not exist")
    assert env.cdi_files() == [] and engine.checkpoint.get(ref.uid) is None
    assert env.instances["acc"].calls[-1][0] == "unprepare"  # rolled back
    (env.host_root / "dev").mkdir(parents=True)
    (env.host_root / "dev/acc0").touch()
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    assert len(env.cdi_files()) == 1


async def test_policy_refuses_edits_before_anything_is_written(tmp_path):
    env = Env(tmp_path, [("third", lambda ctx: EditsBackend(ctx))])
    engine = await env.make_engine()
    env.instances["third"].edits = ContainerEdits(
        env={"LD_PRELOAD": "/x.so"},
        mounts=(Mount(host_path="/run/containerd/containerd.sock", container_path="/c.sock"),),
        hooks=(Hook(hook_name="createRuntime", path="/bin/sh", args=("sh", "-c", "id")),))
    ref = env.add_claim("c", [{"request": "r", "device": "dev-1"}])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert err.startswith("claim default/c: the CDI spec would not be usable (retriable): backend third, device dev-1: ")
    assert "CDI mounts[0] /run/containerd/containerd.sock -> /c.sock: host path not allowed as a mount source" in err
    assert "CDI hooks[0] createRuntime /bin/sh: hook executable not allowed" in err
    assert "CDI env LD_PRELOAD: name refused" in err
    assert env.cdi_files() == [] and engine.checkpoint.get(ref.uid) is None


async def test_admin_policy_allows_what_the_default_refuses(tmp_path):
    (tmp_path / "host/opt/acc").mkdir(parents=True)
    env = Env(tmp_path, [("third", lambda ctx: EditsBackend(ctx))],
              policies={"third": CdiPolicy().overlay(CdiPolicy.model_validate({"mounts": ["/opt/acc"]}))})
    engine = await env.make_engine()
    env.instances["third"].edits = ContainerEdits(
        mounts=(Mount(host_path="/opt/acc", container_path="/opt/acc", options=("ro",)),))
    ref = env.add_claim("c", [{"request": "r", "device": "dev-0"}])
    assert (await engine.prepare([ref]))[ref.uid].error == ""

"""Typed hook calls: a backend result of the wrong type fails the claim with one message naming
the backend and hook, and nothing of the claim is left prepared."""
from __future__ import annotations

import pytest
from engine_support import Env, FakeBackend

from dra_framework.api import ContainerEdits, DeviceStatus, OpaqueConfig, PreparedDeviceEdits, PrepareResult, hookimpl

LABEL = "backend gpu.example.com/b"


def _prepare_returning(value_of):
    class B(FakeBackend):
        @hookimpl
        async def dra_prepare(self, ctx, devices):
            return value_of(devices)
    return B


@pytest.mark.parametrize("value_of, words", [
    (lambda devs: {"dev-0": ContainerEdits(env={"A": "1"})}, "dra_prepare returned dict, expected PrepareResult"),
    (lambda devs: None, "dra_prepare returned None, expected PrepareResult (return PrepareResult() when"),
    (lambda devs: PrepareResult(devices={"dev-0": ContainerEdits(env={"A": "1"})}),
     "dra_prepare returned PrepareResult.devices['dev-0'] as ContainerEdits, expected PreparedDeviceEdits"),
    (lambda devs: PrepareResult(devices={"dev-0": PreparedDeviceEdits({"env": {"A": "1"}})}),
     "dra_prepare returned PrepareResult.devices['dev-0'].edits as dict, expected ContainerEdits"),
    (lambda devs: PrepareResult(devices={"dev-0": PreparedDeviceEdits(status={"uuid": "x"})}),
     "dra_prepare returned PrepareResult.devices['dev-0'].status as dict, expected DeviceStatus or None"),
    (lambda devs: PrepareResult(devices={"dev-9": PreparedDeviceEdits()}),
     "dra_prepare returned PrepareResult.devices['dev-9'], but 'dev-9' is not a device of this call"),
    (lambda devs: PrepareResult(claim_edits={"env": {}}),
     "dra_prepare returned PrepareResult.claim_edits as dict, expected ContainerEdits"),
])
async def test_wrong_prepare_result_fails_the_claim_naming_backend_and_hook(tmp_path, value_of, words):
    env = Env(tmp_path, [("b", lambda ctx: _prepare_returning(value_of)(ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    out = await engine.prepare([ref])
    err = out[ref.uid].error
    assert f"{LABEL}: {words}" in err, err
    assert err.count("dra_prepare") == 1  # one message, not wrapped twice
    assert engine.checkpoint.get(ref.uid) is None and env.cdi_files() == []


async def test_good_result_of_the_same_backend_still_prepares(tmp_path):
    """The control: the same backend returning a PrepareResult with a status prepares."""
    env = Env(tmp_path, [("b", lambda ctx: _prepare_returning(lambda devs: PrepareResult(devices={
        d.name: PreparedDeviceEdits(ContainerEdits(env={"A": "1"}), status=DeviceStatus(data={"n": d.name}))
        for d in devs}))(ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    assert len(env.cdi_files()) == 1


async def test_partition_record_must_be_a_dict(tmp_path):
    class B(FakeBackend):
        @hookimpl
        async def dra_create_partition(self, ctx, device):
            return "part-0"

        @hookimpl
        def dra_destroy_partition(self, record):
            pass

    env = Env(tmp_path, [("b", lambda ctx: B(ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert f"{LABEL}: dra_create_partition returned str, expected a dict" in err, err
    assert env.cdi_files() == []


class Cfg(OpaqueConfig):
    api_version = "gpu.example.com/v1"
    kind = "Cfg"


async def test_validate_config_must_return_a_bool_or_none(tmp_path):
    class B(FakeBackend):
        @hookimpl
        def dra_config_types(self):
            return [Cfg]

        @hookimpl
        def dra_validate_config(self, config, device):
            return "ok"

    env = Env(tmp_path, [("b", lambda ctx: B(ctx))])
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "gpu", "device": "dev-0"}], configs=[{
        "source": "FromClaim", "opaque": {"driver": "gpu.example.com", "parameters": {
            "apiVersion": "gpu.example.com/v1", "kind": "Cfg"}}}])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert f"{LABEL}: dra_validate_config returned str, expected True, False or None" in err, err


@pytest.mark.parametrize("types, words", [
    ({"Cfg": Cfg}, "dra_config_types returned dict, expected a list of OpaqueConfig subclasses"),
    ([dict], "dra_config_types returned <class 'dict'>, which is not an OpaqueConfig subclass"),
])
async def test_config_types_are_checked_at_start(tmp_path, types, words):
    class B(FakeBackend):
        @hookimpl
        def dra_config_types(self):
            return types

    env = Env(tmp_path, [("b", lambda ctx: B(ctx))])
    with pytest.raises(Exception, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        await env.make_engine()

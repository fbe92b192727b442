"""Opaque config resolution: precedence, request scoping, strict user decoding, lenient stored
decoding (docs/failure-modes.md#opaque-configs-from-a-newer-release-in-the-checkpoint)."""
from __future__ import annotations

from typing import Literal

from engine_support import DRIVER, Env, FakeBackend, opaque
from pydantic import BaseModel, ConfigDict, Field

from dra_framework import hookimpl
from dra_framework.engine.checkpoint import encode
from dra_framework.engine.configs import ConfigEntry, ConfigTypes, decode_stored, decode_strict, driver_configs
from dra_framework.model import OpaqueConfig, PrepareResult

GPU_API = "resource.nvidia.com/v1beta1"


class Sharing(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    strategy: Literal["TimeSlicing", "MPS"]
    interval: Literal["Default", "Short", "Long"] = "Default"


class GpuConfig(OpaqueConfig):
    api_version = GPU_API
    kind = "GpuConfig"
    sharing: Sharing | None = None
    tag: str = ""
    max_clients: int = Field(0, alias="maxClients")


class NicConfig(OpaqueConfig):
    api_version = "net.example.com/v1"
    kind = "NicConfig"
    mtu: int = 1500


class Recording(FakeBackend):
    def __init__(self, ctx, names, types, validate=None):
        super().__init__(ctx, names=names, config_types=types)
        self.seen: dict[str, list] = {}
        self.validate = validate

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        for d in devices:
            self.seen[d.name] = list(d.configs)
        return PrepareResult()

    @hookimpl
    def dra_validate_config(self, config, device):
        if self.validate:
            return self.validate(config, device)


def gpu(tag: str, **extra):
    return {"apiVersion": GPU_API, "kind": "GpuConfig", "tag": tag, **extra}


def make_env(tmp_path, validate=None):
    return Env(tmp_path, [("gpu", lambda ctx: Recording(ctx, ("gpu-0", "gpu-1", "gpu-2"), [GpuConfig], validate)),
                          ("nic", lambda ctx: Recording(ctx, ("nic-0",), [NicConfig]))])


async def test_precedence_and_request_scoping(tmp_path):
    env = make_env(tmp_path)
    engine = await env.make_engine()
    configs = [
        opaque(gpu("claim-all"), source="FromClaim"),
        opaque(gpu("class-all"), source="FromClass"),
        opaque(gpu("class-a"), source="FromClass", requests=["a"]),
        opaque(gpu("claim-a-large"), source="FromClaim", requests=["a/large"]),
        opaque(gpu("claim-b"), source="FromClaim", requests=["b"]),
        opaque({"apiVersion": "x/v1", "kind": "Whatever", "bogus": 1}, driver="other.example.com"),
        opaque({"apiVersion": "net.example.com/v1", "kind": "NicConfig", "mtu": 9000}),
    ]
    ref = env.add_claim("c", [{"request": "a/large", "device": "gpu-0"}, {"request": "b", "device": "gpu-1"},
                              {"request": "c", "device": "gpu-2"}, {"request": "n", "device": "nic-0"}],
                        configs=configs)
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    seen = env.instances["gpu"].seen
    assert [c.tag for c in seen["gpu-0"]] == ["class-all", "class-a", "claim-all", "claim-a-large"]
    assert [c.tag for c in seen["gpu-1"]] == ["class-all", "claim-all", "claim-b"]
    assert [c.tag for c in seen["gpu-2"]] == ["class-all", "claim-all"]
    # request-less GpuConfig is not handed to the NIC backend; its own config is
    assert env.instances["nic"].seen["nic-0"] == [NicConfig(mtu=9000)]
    # the example backend uses the last one: later wins
    assert seen["gpu-0"][-1].tag == "claim-a-large"


async def test_strict_decoding_errors_name_the_field(tmp_path):
    env = make_env(tmp_path)
    engine = await env.make_engine()
    cases = {
        "unknown-field": (gpu("x", sharing={"strategy": "MPS", "intervall": "Short"}),
                          "sharing.intervall: unknown field"),
        "bad-enum": (gpu("x", sharing={"strategy": "Magic"}),
                     "sharing.strategy: Input should be 'TimeSlicing' or 'MPS'"),
        "wrong-type": (gpu("x", maxClients="4"), "maxClients: Input should be a valid integer"),
        "snake-name": (gpu("x", max_clients=4), "max_clients: unknown field"),
        "unknown-kind": ({"apiVersion": GPU_API, "kind": "GpuConfigg"}, "unknown apiVersion/kind"),
        "no-kind": ({"apiVersion": GPU_API}, "kind: required"),
    }
    for name, (params, expected) in cases.items():
        ref = env.add_claim(name, [{"request": "a", "device": "gpu-0"}],
                            configs=[opaque(gpu("fine")), opaque(params)])
        err = (await engine.prepare([ref]))[ref.uid].error
        label = f"{params.get('apiVersion')} {params.get('kind', '<no kind>')}"
        assert err.startswith(f"claim default/{name}: config[1] ({label}): "), err
        assert expected in err, err
        assert engine.checkpoint.get(ref.uid) is None
    assert env.instances["gpu"].calls == [] and env.cdi_files() == []


async def test_request_scoped_config_for_wrong_backend_is_error(tmp_path):
    env = make_env(tmp_path)
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "n", "device": "nic-0"}],
                        configs=[opaque(gpu("x"), requests=["n"])])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert "config[0] (resource.nvidia.com/v1beta1 GpuConfig): applies to request 'n'" in err
    assert "backend 'nic'" in err


async def test_validate_config_error_changes_nothing(tmp_path):
    def validate(config, device):
        if config.sharing and config.sharing.strategy == "MPS" and device.name == "gpu-1":
            raise ValueError("sharing.strategy: MPS is not supported on this device")

    env = make_env(tmp_path, validate)
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "a", "device": "gpu-0"}, {"request": "b", "device": "gpu-1"}],
                        configs=[opaque(gpu("x", sharing={"strategy": "MPS"}))])
    err = (await engine.prepare([ref]))[ref.uid].error
    assert err == ("claim default/c: device gpu-1: config[0] (resource.nvidia.com/v1beta1 GpuConfig): "
                   "sharing.strategy: MPS is not supported on this device")
    assert env.instances["gpu"].calls == [] and env.cdi_files() == [] and not env.cp_path.exists()


async def test_config_not_applicable_is_skipped_when_wide_and_fails_when_scoped(tmp_path):
    """dra_validate_config returning False: a claim-wide config is skipped for that device only;
    one scoped to the device's request fails the claim before any side effect."""
    def validate(config, device):
        return device.name != "gpu-1"

    env = make_env(tmp_path, validate)
    engine = await env.make_engine()
    wide = env.add_claim("w", [{"request": "a", "device": "gpu-0"}, {"request": "b", "device": "gpu-1"}],
                         configs=[opaque(gpu("all"))])
    assert (await engine.prepare([wide]))[wide.uid].error == ""
    seen = env.instances["gpu"].seen
    assert [c.tag for c in seen["gpu-0"]] == ["all"] and seen["gpu-1"] == []
    scoped = env.add_claim("s", [{"request": "b", "device": "gpu-2"}], configs=[opaque(gpu("x"), requests=["b"])])
    ok = (await engine.prepare([scoped]))[scoped.uid]
    assert ok.error == ""
    bad = env.add_claim("t", [{"request": "b", "device": "gpu-1"}], configs=[opaque(gpu("x"), requests=["b"])])
    err = (await engine.prepare([bad]))[bad.uid].error
    assert "device gpu-1" in err and "GpuConfig" in err and "cannot be applied" in err


def test_driver_configs_order_and_filter():
    alloc = {"devices": {"config": [
        {"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": gpu("1")}},
        {"source": "FromClass", "opaque": {"driver": "other", "parameters": gpu("2")}},
        {"source": "FromClass", "opaque": {"driver": DRIVER, "parameters": gpu("3")}},
        {"source": "FromClaim", "requests": ["r"], "opaque": {"driver": DRIVER, "parameters": '{"tag":"4"}'}},
    ]}}
    entries = driver_configs(alloc, DRIVER)
    assert [(e.index, e.source) for e in entries] == [(2, "FromClass"), (0, "FromClaim"), (3, "FromClaim")]
    assert entries[2].parameters == {"tag": "4"} and entries[2].applies_to("r/sub") and not entries[2].applies_to("q")


def test_stored_configs_are_decoded_leniently():
    types = ConfigTypes({"gpu": [GpuConfig]})
    newer = gpu("x", sharing={"strategy": "MPS", "mpsConfig": {"threads": 50}}, newField=1)
    decoded = decode_stored(newer, types)
    assert decoded == GpuConfig(tag="x", sharing=Sharing(strategy="MPS"))
    assert decode_stored({"apiVersion": "a/v9", "kind": "Future", "x": 1}, types) == {"apiVersion": "a/v9",
                                                                                        "kind": "Future", "x": 1}
    # the same data as user input is refused
    try:
        decode_strict(ConfigEntry(0, "FromClaim", (), newer), types, "default/c")
    except ValueError as exc:
        assert "newField: unknown field" in str(exc) and "sharing.mpsConfig: unknown field" in str(exc)
    else:
        raise AssertionError("strict decoding accepted unknown fields")


async def test_unprepare_with_newer_stored_config_succeeds(tmp_path):
    """docs/failure-modes.md#opaque-configs-from-a-newer-release-in-the-checkpoint:
    a checkpoint written by a newer release holds a config with an extra field."""
    env = make_env(tmp_path)
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "a", "device": "gpu-0"}], configs=[opaque(gpu("x"))])
    assert (await engine.prepare([ref]))[ref.uid].error == ""
    # rewrite the checkpoint as a newer driver would have: extra fields in the entry and config
    claims = dict(engine.checkpoint.claims)
    e = dict(claims[ref.uid])
    e["devices"] = [{**d, "configs": [{**d["configs"][0], "newField": {"a": 1}}], "futureKey": 7}
                    for d in e["devices"]]
    e["somethingNew"] = True
    claims[ref.uid] = e
    env.cp_path.write_bytes(encode(claims, env.boot_id))
    engine2 = await env.make_engine()
    assert env.problems == []
    assert engine2.stored_configs(ref.uid) == {"gpu-0": [GpuConfig(tag="x")]}
    assert await engine2.unprepare([ref]) == {ref.uid: ""}
    assert engine2.checkpoint.claims == {}

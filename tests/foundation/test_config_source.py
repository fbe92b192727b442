"""The settings' sources read before validation (dra_framework.config_source) and the socket
settings `dra-framework run` serves from them before pydantic is imported (docs/operations.md,
"Start-up"): they must be what validation makes of the same sources."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dra_framework.config import Settings, validate_settings
from dra_framework.config_source import FLAGS, YAML_KEYS, read_config
from dra_framework.startup import SocketSettings

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))


def test_yaml_keys_are_the_settings_aliases():
    assert YAML_KEYS == {name: f.alias or name for name, f in Settings.model_fields.items() if name != "drivers"}
    assert {field for _flag, field, _env in FLAGS} == set(YAML_KEYS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_socket_settings_read_early_are_the_validated_ones(path, tmp_path):
    raw = read_config(path, {"node_name": "n1"})
    early = SocketSettings.read(raw)
    assert early is not None, path
    assert early == SocketSettings.of(validate_settings(raw))


def test_socket_settings_follow_flags_and_env_like_validation(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodeName: n1\nkubeletRootDir: kubelet\npodUID: from-file\nhealthResendSeconds: 3\n"
                   "drivers: [{name: a.example.com, backends: [{name: example}]}, "
                   "{name: b.example.com, backends: [{name: example}]}]\n")
    env = {"DRA_FRAMEWORK_POD_UID": "from-env", "DRA_FRAMEWORK_HEALTH_RESEND_SECONDS": "7.5"}
    for overrides, environ in (({}, {}), ({}, env), ({"kubelet_root_dir": "other", "pod_uid": "flag"}, env)):
        raw = read_config(cfg, overrides, environ)
        early = SocketSettings.read(raw)
        assert early is not None and early == SocketSettings.of(validate_settings(raw)), (overrides, environ)
    assert early.kubelet_root_dir == Path("other").resolve() and early.pod_uid == "flag"
    assert early.health_resend_seconds == 7.5 and early.drivers == ("a.example.com", "b.example.com")


@pytest.mark.parametrize("bad", [
    {"drivers": []},
    {"drivers": [{"name": "Not_A_DNS_Name", "backends": [{"name": "example"}]}]},
    {"drivers": [{"name": "a.example.com"}, {"name": "a.example.com"}]},
    {"drivers": ["a.example.com"]},
    {"kubeletRootDir": 5},
    {"podUID": ["x"]},
    {"healthResendSeconds": True},
    {"healthResendSeconds": 60},
    {"healthResendSeconds": "soon"},
    {"kubelet_root_dir": "/elsewhere"},  # pydantic's field names are valid keys too
    {"pod_uid": "abc"},
    {"kubeletRootDir": "/" + "x" * 120},  # no socket name fits: validation names the setting
], ids=lambda b: json.dumps(b)[:40])
def test_socket_settings_are_not_guessed_from_values_validation_would_refuse(bad, tmp_path):
    data = {"nodeName": "n1", "drivers": [{"name": "a.example.com", "backends": [{"name": "example"}]}], **bad}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(data))
    assert SocketSettings.read(read_config(cfg)) is None

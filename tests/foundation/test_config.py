"""Composed-driver config: validation errors name the field; flag > env > file precedence."""
from __future__ import annotations

import pytest

from dra_framework.config import load_settings
from dra_framework.composition import build_backends
from dra_framework.errors import ConfigError
from dra_framework.plugins import Registry


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_named(tmp_path):
    p = write(tmp_path, "nodeName: n\ndrivers:\n- name: a.example.com\n  backend: []\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    msg = str(exc.value)
    assert "drivers[0].backend: unknown field" in msg
    assert "drivers[0].backends: Field required" in msg


def test_bad_driver_name_named(tmp_path):
    p = write(tmp_path, "nodeName: n\ndrivers:\n- name: Bad_Name\n  backends: [{name: example}]\n")
    with pytest.raises(ConfigError, match=r"drivers\[0\]\.name: .*DNS subdomain"):
        load_settings(p)


def test_backend_option_error_named(tmp_path):
    p = write(tmp_path, "nodeName: n\ndrivers:\n- name: a.example.com\n  backends:\n  - name: example\n"
                        "    options: {count: many, colour: red}\n")
    s = load_settings(p)
    with pytest.raises(ConfigError) as exc:
        build_backends(s, 0, s.drivers[0], Registry())
    msg = str(exc.value)
    assert "drivers[0].backends[0].options.count" in msg
    assert "drivers[0].backends[0].options.colour: unknown field" in msg


def test_unknown_backend_named(tmp_path):
    p = write(tmp_path, "nodeName: n\ndrivers:\n- name: a.example.com\n  backends: [{name: nvidai}]\n")
    s = load_settings(p)
    with pytest.raises(ConfigError, match=r"drivers\[0\]\.backends\[0\]\.name: unknown backend 'nvidai'"):
        build_backends(s, 0, s.drivers[0], Registry())


def test_precedence_flag_over_env_over_file(tmp_path):
    p = write(tmp_path, "nodeName: from-file\nkubeletRootDir: /file\ncdiRoot: /file-cdi\n")
    env = {"NODE_NAME": "from-env", "DRA_FRAMEWORK_KUBELET_ROOT_DIR": "/env"}
    s = load_settings(p, {"node_name": "from-flag"}, environ=env)
    assert s.node_name == "from-flag"
    assert str(s.kubelet_root_dir) == "/env"
    assert str(s.cdi_root) == "/file-cdi"
    assert s.registry_dir.as_posix() == "/env/plugins_registry"


def test_node_name_required_for_run(tmp_path):
    p = write(tmp_path, "drivers: []\n")
    with pytest.raises(ConfigError, match="nodeName: required"):
        load_settings(p, environ={})


def test_invalid_yaml_and_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(write(tmp_path, "a: [\n"), environ={})
    with pytest.raises(ConfigError, match="apiQPS"):
        load_settings(write(tmp_path, "nodeName: n\napiQPS: fast\n"), environ={})


@pytest.mark.parametrize("text, key, line", [
    ("drivers:\n- name: a.example.com\n  backends: [{name: example}]\ndrivers: []\n", "drivers", 4),
    ("nodeName: a\ndrivers:\n- name: a.example.com\n  backends:\n  - name: example\n    options: {count: 1, count: 2}\n",
     "count", 6),
])
def test_duplicate_key_is_refused_with_its_line(tmp_path, text, key, line):
    """YAML parsers keep the last of two equal keys: a second ``drivers:`` would drop the first list."""
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(p, environ={})
    msg = str(exc.value)
    assert msg.startswith(f"{p}: invalid YAML: ") and f"duplicate key '{key}'" in msg and f"line {line}," in msg, msg


def test_yaml_merge_keys_still_work(tmp_path):
    p = write(tmp_path, "nodeName: n\nx-opts: &o {count: 1}\n")
    with pytest.raises(ConfigError, match="x-opts: unknown field"):  # parsed, then refused as a key
        load_settings(p, environ={})
    p = write(tmp_path, "nodeName: n\ndrivers:\n- name: a.example.com\n  backends:\n  - name: example\n"
                        "    options: &o {count: 1}\n- name: b.example.com\n  backends:\n  - name: example\n"
                        "    options: {<<: *o, count: 2}\n")
    s = load_settings(p, environ={})
    assert [b.options for d in s.drivers for b in d.backends] == [{"count": 1}, {"count": 2}]


@pytest.mark.parametrize("name", ["Node_1", "node 1", "-node", "a" * 254])
def test_node_name_must_be_a_dns_subdomain(tmp_path, name):
    p = write(tmp_path, "drivers: []\n")
    with pytest.raises(ConfigError, match="nodeName: .*DNS-1123 subdomain"):
        load_settings(p, environ={"NODE_NAME": name})
    with pytest.raises(ConfigError, match=f"^{p}: nodeName: "):
        load_settings(write(tmp_path, f"nodeName: '{name}'\n"), environ={})


def test_host_name_default_is_lower_case(tmp_path, monkeypatch):
    """The kubelet lower-cases the host name for its Node; discover/validate do the same."""
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "Worker-1.Example")
    s = load_settings(write(tmp_path, "drivers: []\n"), environ={}, require_node_name=False)
    assert s.node_name == "worker-1.example"


def test_directory_settings_that_name_a_file_are_refused(tmp_path):
    """cdiRoot naming a file let the daemon run and fail every prepare; now refused up front."""
    f = tmp_path / "file"
    f.write_text("")
    p = write(tmp_path, "nodeName: n\ncdiRoot: file\ndrivers: []\n")
    with pytest.raises(ConfigError, match=rf"^{p}: cdiRoot: {f} is not a directory$"):
        load_settings(p, environ={})
    with pytest.raises(ConfigError, match=rf"^env DRA_FRAMEWORK_STATE_DIR: stateDir: {f} is not a directory$"):
        load_settings(write(tmp_path, "nodeName: n\n"), environ={"DRA_FRAMEWORK_STATE_DIR": str(f)})
    with pytest.raises(ConfigError, match=r"^flag --kubelet-root-dir: kubeletRootDir: .* is not a directory$"):
        load_settings(write(tmp_path, "nodeName: n\n"), overrides={"kubelet_root_dir": str(f)}, environ={})
    s = load_settings(write(tmp_path, f"nodeName: n\ncdiRoot: {tmp_path / 'later'}\n"), environ={})
    assert str(s.cdi_root).endswith("later")      # not there yet: created when first needed


def test_entry_point_name_of_a_backend_gets_a_did_you_mean_through_the_cli(tmp_path):
    """The built-in SR-IOV backend is ``sriov-nic`` in a config; its entry point is ``sriov_nic``."""
    import subprocess
    import sys
    from pathlib import Path

    host = Path(__file__).resolve().parents[2] / "examples" / "hosts" / "sriov-e810"
    p = write(tmp_path, "drivers:\n- name: sriovnic.dra-framework.io\n  backends:\n"
                        f"  - {{name: sriov_nic, options: {{hostRoot: '{host}', netlink: fake, hotplug: false}}}}\n")
    r = subprocess.run([str(Path(sys.executable).parent / "dra-framework"), "discover", "-c", str(p)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "drivers[0].backends[0].name: unknown backend 'sriov_nic'" in r.stderr
    assert "did you mean 'sriov-nic' (the backend of plugin 'sriov_nic')?" in r.stderr
    assert "Traceback" not in r.stderr

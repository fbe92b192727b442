"""The installed ``dra-framework`` executable, run as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from plugin_dist import install_plugin


ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "dra-framework"
EXAMPLE = ROOT / "examples" / "configs" / "example.yaml"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    e.pop("NODE_NAME", None)
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=e, timeout=120)


def test_plugins_lists_builtin_and_third_party_with_versions():
    r = run("plugins", "-o", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["backend"]: row for row in json.loads(r.stdout) if "backend" in row}
    assert rows["example"]["distribution"] == "dra-example-backend"
    assert rows["example"]["version"] == "0.3.0"
    assert rows["nvidia"]["distribution"] == "dra-framework"
    table = run("plugins").stdout
    assert "example" in table and "0.3.0" in table


def test_discover_table_shows_attributes_capacity_and_counters():
    r = run("discover", "--config", str(EXAMPLE), "--node-name", "node-a")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "acc-0-half-1" in out
    assert "model=sim-x1" in out and "firmware=1.2.0" in out
    assert "memory=17179869184" in out
    assert "[counters] acc-3-counters" in out
    assert "consumes acc-0-counters: memory=8589934592,halves=1" in out


def test_misspelled_config_key_is_one_line_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodeName: n\nkubeletRootDri: /x\ndrivers: []\n")
    r = run("validate", "--config", str(cfg))
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {cfg}: kubeletRootDri: unknown field (did you mean 'kubeletRootDir'?)"]


def test_misspelled_hook_in_installed_plugin_is_one_line_error(tmp_path):
    """A real (dist-info) entry point whose backend misspells a hook."""
    install_plugin(tmp_path, "typo_backend", (
        "from dra_framework import hookimpl\n"
        "class B:\n"
        "    def __init__(self, o, c): pass\n"
        "    @hookimpl\n"
        "    def dra_discovr(self, inventory): pass\n"
        "@hookimpl\n"
        "def dra_register_backends(register):\n"
        "    register('typo', B)\n"), "typo-backend", "1.0", "typo")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drivers:\n- name: typo.example.com\n  backends: [{name: typo}]\n")
    r = run("discover", "--config", str(cfg), env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "dra_discovr" in lines[0] and "typo" in lines[0], r.stderr


def test_validate_ok_and_json_logs():
    r = run("--log-format", "json", "-v", "validate", "--config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "config valid" in r.stdout
    for line in r.stderr.splitlines():
        json.loads(line)  # every log line is JSON


def test_run_without_node_name_fails_clearly():
    r = run("run", "--config", str(EXAMPLE))
    assert r.returncode == 1
    assert "nodeName: required" in r.stderr


def test_validate_checks_a_cdi_dir(tmp_path):
    from dra_framework.cdi import CdiWriter, ContainerEdits

    w = CdiWriter(str(tmp_path), vendor="k8s.example.dra.dev", class_="claim")
    w.write_claim_spec("6f1c2a4e-9a57-4c43-8f2e-1b2f0c9a7d10", [("acc-0", None, ContainerEdits(env={"A": "1"}))])
    ok = run("validate", "--config", str(EXAMPLE), "--cdi-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "1 spec(s) checked" in ok.stdout
    (tmp_path / "bad.json").write_text('{"cdiVersion": "0.3.0", "kind": "x/y", "devices": '
                                       '[{"name": "d", "containerEdits": {"deviceNodes": [{"path": "dev/x"}]}}]}')
    bad = run("validate", "--config", str(EXAMPLE), "--cdi-dir", str(tmp_path))
    assert bad.returncode == 1
    assert "bad.json" in bad.stderr and "deviceNodes[0].path" in bad.stderr


def _dist_plugin(tmp_path, name: str, body: str) -> dict:
    """A real (dist-info) entry point for a backend module written by the test."""
    (tmp_path / f"{name}_backend.py").write_text(body)
    dist = tmp_path / f"{name}_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[dra_framework.backends]\n{name} = {name}_backend\n")
    return {"PYTHONPATH": str(tmp_path)}


def test_backend_discovery_failure_is_one_line(tmp_path):
    env = _dist_plugin(tmp_path, "boom",
                       "from dra_framework import hookimpl\n"
                       "class B:\n"
                       "    def __init__(self, o, c): pass\n"
                       "    @hookimpl\n"
                       "    def dra_discover(self, inventory): raise RuntimeError('sysfs exploded')\n"
                       "    @hookimpl\n"
                       "    def dra_prepare(self, ctx, devices): pass\n"
                       "    @hookimpl\n"
                       "    def dra_unprepare(self, stored): pass\n"
                       "@hookimpl\n"
                       "def dra_register_backends(register):\n"
                       "    register('boom', B)\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drivers:\n- name: boom.example.com\n  backends: [{name: boom}]\n")
    for cmd in ("discover", "validate"):
        r = run(cmd, "--config", str(cfg), env=env)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert "backend boom: dra_discover failed: RuntimeError: sysfs exploded" in lines[0]


def test_errors_name_where_a_bad_value_came_from(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\xff\xfe")
    r = run("validate", "--config", str(cfg))
    assert r.returncode == 1 and "not UTF-8" in r.stderr and "Traceback" not in r.stderr
    r = run("validate", "--config", str(EXAMPLE), env={"DRA_FRAMEWORK_API_QPS": "abc"})
    assert r.returncode == 1 and "env DRA_FRAMEWORK_API_QPS: apiQPS" in r.stderr
    bad = tmp_path / "b.yaml"
    bad.write_text("drivers:\n- name: a.example.com\n  backends: [{name: example, options: {count: x}}]\n")
    r = run("validate", "--config", str(bad))
    assert f"{bad}: drivers[0].backends[0].options.count" in r.stderr


def test_discover_into_a_closed_pipe_is_quiet():
    p = subprocess.run(f"{EXE} discover --config {EXAMPLE} | head -1", shell=True, capture_output=True,
                       text=True, timeout=60)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr


def test_unknown_keys_get_a_did_you_mean_at_every_level(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodeName: n\nmetricPort: 1\ndrivers:\n- name: a.example.com\n  cdiVendr: x\n"
                   "  backends:\n  - name: example\n    deviceAtributes: []\n    options: {cuont: 1}\n"
                   "  - name: example\n    zzz: 1\n")
    r = run("validate", "--config", str(cfg))
    lines = sorted(ln.removeprefix("error: ") for ln in r.stderr.splitlines() if ln.strip())
    assert r.returncode == 1
    assert lines == sorted([
        f"{cfg}: metricPort: unknown field (did you mean 'metricsPort'?)",
        f"{cfg}: drivers[0].cdiVendr: unknown field (did you mean 'cdiVendor'?)",
        f"{cfg}: drivers[0].backends[0].deviceAtributes: unknown field (did you mean 'deviceAttributes'?)",
        f"{cfg}: drivers[0].backends[1].zzz: unknown field",
    ]), r.stderr
    cfg.write_text("drivers:\n- name: a.example.com\n  backends:\n  - name: example\n    options: {cuont: 1}\n")
    r = run("validate", "--config", str(cfg))
    assert r.stderr.strip() == (f"error: {cfg}: drivers[0].backends[0].options.cuont: unknown field "
                                "(did you mean 'count'?)"), r.stderr


def test_global_flags_before_or_after_the_subcommand():
    for args in (["--log-format", "json", "-v", "validate", "--config", str(EXAMPLE)],
                 ["validate", "--config", str(EXAMPLE), "--log-format", "json", "-v"],
                 ["-v", "validate", "--log-format", "json", "--config", str(EXAMPLE)]):
        r = run(*args)
        assert r.returncode == 0, (args, r.stderr)
        lines = r.stderr.splitlines()
        assert lines and all(json.loads(ln)["level"] for ln in lines), (args, r.stderr)
        assert any(json.loads(ln)["level"] == "debug" for ln in lines), args
    r = run("validate", "--config", str(EXAMPLE), env={"DRA_FRAMEWORK_LOG_FORMAT": "json"})
    assert r.returncode == 0 and all(json.loads(ln) for ln in r.stderr.splitlines()), r.stderr
    r = run("--log-format", "json", "kubelet", "register-check", "--driver", "x.example.com",
            "--kubelet-root-dir", "/nonexistent", "-v")
    assert r.returncode == 1 and "does not exist" in json.loads(r.stdout)["error"]


def help_entries(text: str) -> dict[str, str]:
    """``{'--flag': 'its help text'}`` from argparse ``--help`` output (entries start at two
    spaces and a dash; continuation lines are indented deeper)."""
    import re

    out: dict[str, str] = {}
    current = None
    for line in text.split("options:", 1)[1].splitlines():
        m = re.match(r"^  (-[^ ,]+)(?:[ ,][^ ]*)*?(?:  +(.*))?$", line)
        if m and not line.startswith("   "):
            flags = re.findall(r"(?:^|, )(--?[\w-]+)", line.strip())
            current = max(flags, key=len)
            out[current] = ""
            rest = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            if len(rest) == 2:
                out[current] = rest[1]
        elif current and line.strip():
            out[current] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in out.items()}


def test_help_gives_meaning_default_and_env_of_every_flag():
    from dra_framework.config import FLAGS

    for cmd in ("run", "discover", "validate"):
        entries = help_entries(run(cmd, "--help").stdout)
        for flag, _field, env in FLAGS + [("--config", "", "DRA_FRAMEWORK_CONFIG"),
                                          ("--log-format", "", "DRA_FRAMEWORK_LOG_FORMAT")]:
            text = entries[flag]
            assert "default:" in text and f"env {env}" in text, (cmd, flag, text)
            assert len(text.split("(default:")[0].strip()) > 10, (cmd, flag, "no meaning given")
        for flag, text in entries.items():
            assert flag == "--help" or "default:" in text, (cmd, flag, text)
    for cmd in (["plugins"], ["kubelet", "prepare"], ["kubelet", "watch-health"], ["kubelet", "register-check"]):
        for flag, text in help_entries(run(*cmd, "--help").stdout).items():
            assert flag == "--help" or "default:" in text or "(required)" in text, (cmd, flag, text)


def test_discover_and_validate_without_a_config_say_what_they_need():
    for cmd in ("discover", "validate"):
        r = run(cmd)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert "needs a config file with drivers: pass --config FILE (or set DRA_FRAMEWORK_CONFIG)" in lines[0]
    r = run("discover", env={"DRA_FRAMEWORK_CONFIG": str(EXAMPLE)})
    assert r.returncode == 0 and "acc-0" in r.stdout, r.stderr


def test_k8s_version_selects_the_slice_rules():
    """1.34 keeps counter sets in the devices' slice; 1.35+ publishes them in a slice of their own."""
    def slices(version):
        r = run("discover", "--config", str(EXAMPLE), "-o", "json", "--k8s-version", version)
        assert r.returncode == 0, r.stderr
        return [("sharedCounters" in i["spec"], len(i["spec"].get("devices", []))) for i in json.loads(r.stdout)["items"]]

    assert slices("1.34") == [(True, 12)]
    assert slices("v1.37.2") == [(True, 0), (False, 12)]
    r = run("validate", "--config", str(EXAMPLE), "--k8s-version", "1.34")
    assert r.returncode == 0 and "ResourceSlice rules of Kubernetes 1.34" in r.stdout
    r = run("discover", "--config", str(EXAMPLE), "--k8s-version", "1.33")
    assert r.returncode == 2 and "need Kubernetes 1.34 or newer" in r.stderr
    assert "ResourceSlice rules of Kubernetes 1.37" in run("discover", "--config", str(EXAMPLE)).stderr


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "c.yaml").write_text("nodeName: n\nkubeletRootDir: kubelet\ndrivers:\n- name: ex.example.com\n"
                                "  backends:\n  - name: example\n    options: {count: 0, hostRoot: host}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([str(EXE), "validate", "--config", "../conf/c.yaml"], capture_output=True, text=True,
                       cwd=elsewhere, timeout=60, env={k: v for k, v in os.environ.items() if k != "NODE_NAME"})
    assert r.returncode == 0, r.stderr
    assert f"hostRoot {sub / 'host'}" in r.stderr                   # the no-devices warning, resolved
    assert f"registration socket {sub / 'kubelet'}/plugins_registry/" in r.stdout
    from dra_framework.config import load_settings

    s = load_settings(sub / "c.yaml", {"cdi_root": "cdi"})
    assert s.kubelet_root_dir == sub / "kubelet"
    assert s.cdi_root == Path(os.getcwd()) / "cdi"                  # flags: against the working directory


def test_validate_cdi_dir_judges_other_tools_specs_as_a_runtime_does(tmp_path):
    """/var/run/cdi also holds other tools' specs (nvidia-ctk writes cdiVersion 0.5.0+ for specs
    that 0.3.0 could express): valid for the runtime, so not reported; this config's own kind
    keeps the framework's rules."""
    spec = {"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
            "devices": [{"name": "all", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}}]}
    (tmp_path / "nvidia.json").write_text(json.dumps(spec))
    r = run("validate", "--config", str(EXAMPLE), "--cdi-dir", str(tmp_path))
    assert r.returncode == 0 and "1 spec(s) checked" in r.stdout, r.stderr
    (tmp_path / "own.json").write_text(json.dumps({**spec, "kind": "k8s.example.dra.dev/claim"}))
    r = run("validate", "--config", str(EXAMPLE), "--cdi-dir", str(tmp_path))
    assert r.returncode == 1 and "own.json" in r.stderr and "nvidia.json" not in r.stderr, r.stderr
    assert "must be the minimum required version '0.3.0'" in r.stderr


def test_fatal_error_is_a_json_line_in_json_log_format(tmp_path):
    """`run --log-format json` ended with a plain-text error line: the one a log collector most needs."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("drivers: [\n")
    for args, env in ((["--log-format", "json", "run", "--config", str(bad), "--node-name", "n"], None),
                      (["run", "--config", str(bad), "--node-name", "n"], {"DRA_FRAMEWORK_LOG_FORMAT": "json"})):
        r = run(*args, env=env)
        lines = r.stderr.splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        rec = json.loads(lines[0])
        assert rec["level"] == "error" and rec["msg"].startswith(f"{bad}: invalid YAML"), rec
    r = run("run", "--config", str(bad), "--node-name", "n")
    assert r.returncode == 1 and r.stderr.startswith(f"error: {bad}: invalid YAML"), r.stderr

"""No path of ``dra-framework`` ends in a traceback: every subcommand against an unreachable API
server, unreadable or malformed files and closed pipes; and ``run`` serves the kubelet while
the API server is down (claims in the checkpoint can always be unprepared)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_cli import EXAMPLE, EXE, run

DEAD_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: down, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: down, context: {cluster: down, user: u}}]
current-context: down
users: [{name: u, user: {token: x}}]
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def tmp_path():
    """A short directory: unix socket paths under it must stay below 108 bytes."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="dra-cli-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def dead_api_config(tmp_path: Path, driver: str = "noapi.dra.dev", **extra) -> Path:
    (tmp_path / "dead.kubeconfig").write_text(DEAD_KUBECONFIG)
    for d in ("kubelet/plugins_registry", "kubelet/plugins"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    cfg = {"nodeName": "node-noapi", "kubeletRootDir": str(tmp_path / "kubelet"), "cdiRoot": str(tmp_path / "cdi"),
           "stateDir": str(tmp_path / "state"), "kubeconfig": str(tmp_path / "dead.kubeconfig"),
           "drivers": [{"name": driver, "backends": [{"name": "example", "options": {"count": 1}}]}], **extra}
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(cfg))
    return path


def kubelet(tmp_path: Path, *args: str) -> tuple[int, dict]:
    r = run("kubelet", *args, "--driver", "noapi.dra.dev", "--kubelet-root-dir", str(tmp_path / "kubelet"))
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def wait(pred, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out = pred()
            if out:
                return out
        except Exception:  # noqa: BLE001 - keep polling
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")


def test_run_against_unreachable_api_server_serves_the_kubelet(tmp_path):
    """The daemon starts although the API server refuses connections: sockets come up, prepare
    fails per claim naming the API server, unprepare works, /readyz and the metric say why."""
    healthz, metrics = free_port(), free_port()
    cfg = dead_api_config(tmp_path, healthzPort=healthz, metricsPort=metrics)
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(EXE), "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait(lambda: (tmp_path / "kubelet/plugins/noapi.dra.dev/dra.sock").exists(), 30, "the DRA socket", log)
        assert proc.poll() is None, log.read_text()
        rc, reg = kubelet(tmp_path, "register-check")
        assert rc == 0, reg
        rc, out = kubelet(tmp_path, "prepare", "--claim", "default/c1/uid-1")
        err = out["claims"]["uid-1"]["error"]
        assert rc == 1 and "https://127.0.0.1:9" in err and "unreachable" in err, err
        rc, out = kubelet(tmp_path, "unprepare", "--claim", "default/c1/uid-1")
        assert rc == 0 and out["claims"]["uid-1"]["error"] == ""
        code, body = wait(lambda: (lambda r: r if r[0] == 503 else None)(http(f"http://127.0.0.1:{healthz}/readyz")),
                          20, "/readyz", log)
        assert "API server https://127.0.0.1:9 unreachable" in body, body
        assert "dra_framework_api_server_reachable 0.0" in http(f"http://127.0.0.1:{metrics}/metrics")[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    text = log.read_text()
    assert rc == 0, text
    assert "Traceback" not in text, text
    assert "cannot look up Node 'node-noapi'" in text


def test_claim_namespace_and_name_are_validated_before_use(tmp_path):
    """A name that would walk the API URL (``../../../namespaces/team-b/...``) is refused per
    claim, naming the field; the other claims of the call are served."""
    cfg = dead_api_config(tmp_path)
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(EXE), "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait(lambda: (tmp_path / "kubelet/plugins/noapi.dra.dev/dra.sock").exists(), 30, "the DRA socket", log)
        rc, out = kubelet(tmp_path, "prepare",
                          "--claim", "team-a/../../../namespaces/team-b/resourceclaims/victim/uid-1",
                          "--claim", "Team_A/c/uid-2", "--claim", "default/c/../../x", "--claim", "default/ok/uid-4")
        errors = {u: c["error"] for u, c in out["claims"].items()}
        assert errors["uid-1"].startswith("claim name '../../../namespaces/team-b/resourceclaims/victim' is invalid")
        assert errors["uid-2"].startswith("claim namespace 'Team_A' is invalid: must be a DNS-1123 label")
        assert errors["x"].startswith("claim name 'c/../..' is invalid")
        assert "unreachable" in errors["uid-4"]          # valid: reaches the engine
        rc, out = kubelet(tmp_path, "unprepare", "--claim", "team-a/a/b/uid-5")
        assert "claim name 'a/b' is invalid" in out["claims"]["uid-5"]["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _closed_pipe_run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reading end is already closed (``... | true``)."""
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    try:
        p = subprocess.run([str(EXE), *args], stdout=w, stderr=subprocess.PIPE, text=True, env=env, timeout=120,
                           cwd=cwd)
    finally:
        os.close(w)
    return p


def _sweep_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    (tmp / "dead.kubeconfig").write_text(DEAD_KUBECONFIG)
    (tmp / "garbage.kubeconfig").write_text("- just\n- a list\n")
    (tmp / "invalid.kubeconfig").write_text("clusters: [unclosed\n")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp / "deep.yaml").write_text("a: " + "[" * 600 + "]" * 600 + "\n")
    (tmp / "deep-map.yaml").write_text("drivers: " + "{b: " * 120 + "1" + "}" * 120 + "\n")
    (tmp / "adir").mkdir(exist_ok=True)
    (tmp / "list.yaml").write_text("- 1\n")
    kroot = str(tmp / "nokubelet")
    cases = []
    for cmd in ("run", "discover", "validate"):
        extra = ["--node-name", "n"] if cmd == "run" else []
        for bad in ("binary.yaml", "deep.yaml", "deep-map.yaml", "adir", "missing.yaml", "list.yaml"):
            cases.append((f"{cmd} --config {bad}", [cmd, "--config", str(tmp / bad), *extra]))
        cases.append((f"{cmd} --kubeconfig garbage", [cmd, "--config", str(EXAMPLE), "--kubeconfig",
                                                      str(tmp / "garbage.kubeconfig"), *extra]))
        cases.append((f"{cmd} --kubeconfig invalid YAML", [cmd, "--config", str(EXAMPLE), "--kubeconfig",
                                                           str(tmp / "invalid.kubeconfig"), *extra]))
        cases.append((f"{cmd} --kubeconfig missing", [cmd, "--config", str(EXAMPLE), "--kubeconfig",
                                                      str(tmp / "missing.kubeconfig"), *extra]))
    cases.append(("validate --cdi-dir deep", ["validate", "--config", str(EXAMPLE), "--cdi-dir", str(tmp)]))
    for sub in ("register-check", "prepare", "unprepare", "watch-health"):
        claim = ["--claim", "default/c/uid-1"] if sub in ("prepare", "unprepare") else []
        cases.append((f"kubelet {sub} no socket", ["kubelet", sub, "--driver", "x.example.com",
                                                   "--kubelet-root-dir", kroot, *claim, "--timeout", "2"]))
        cases.append((f"kubelet {sub} endpoint is a file", [
            "kubelet", sub, "--driver", "x.example.com", "--endpoint", str(tmp / "binary.yaml"),
            "--api-version", "v1" if sub != "watch-health" else "v1alpha1", *claim, "--timeout", "2"]))
    cases.append(("plugins", ["plugins"]))
    cases.append(("plugins json", ["plugins", "-o", "json"]))
    cases.append(("discover", ["discover", "--config", str(EXAMPLE)]))
    cases.append(("discover yaml", ["discover", "--config", str(EXAMPLE), "-o", "yaml"]))
    cases.append(("validate", ["validate", "--config", str(EXAMPLE)]))
    cases.append(("help", ["--help"]))
    return cases


def test_every_subcommand_fails_in_one_line_never_a_traceback(tmp_path):
    """Each case runs twice: normally, and with stdout a closed pipe."""
    for name, args in _sweep_cases(tmp_path):
        for closed in (False, True):
            r = _closed_pipe_run(*args) if closed else run(*args)
            where = f"{name}{' (closed pipe)' if closed else ''}: rc={r.returncode}\n{r.stderr}"
            assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, where
            assert r.returncode in (0, 1, 2), where
            if r.returncode == 1 and args[0] != "kubelet" and args[0] != "validate":
                lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
                assert len(lines) == 1 and lines[0].startswith("error: "), where


def test_run_with_unloadable_kubeconfig_is_one_line(tmp_path):
    r = run("run", "--config", str(EXAMPLE), "--node-name", "n", "--kubeconfig", str(tmp_path / "nope"))
    assert r.returncode == 1 and r.stderr.startswith("error: kubeconfig: cannot load"), r.stderr


def test_run_with_invalid_yaml_kubeconfig_names_it_in_one_line(tmp_path):
    kc = tmp_path / "kc"
    kc.write_text("clusters: [unclosed\n")
    r = run("run", "--config", str(EXAMPLE), "--node-name", "n", "--kubeconfig", str(kc))
    assert r.returncode == 1 and r.stderr.startswith(f"error: kubeconfig: cannot load {kc}: "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_invalid_log_format_env_is_a_usage_error():
    r = run("plugins", env={"DRA_FRAMEWORK_LOG_FORMAT": "xml"})
    assert r.returncode == 2 and "DRA_FRAMEWORK_LOG_FORMAT: invalid choice: 'xml'" in r.stderr, r.stderr
    assert run("--log-format", "json", "plugins", env={"DRA_FRAMEWORK_LOG_FORMAT": "xml"}).returncode == 0


@pytest.mark.parametrize("text", ["a: " + "[" * 600 + "]" * 600, "a: " + "{b: " * 100 + "1" + "}" * 100])
def test_deeply_nested_config_is_a_config_error(tmp_path, text):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")
    r = run("validate", "--config", str(cfg))
    assert r.returncode == 1 and "nested" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"error: {cfg}: ")


async def test_api_timeout_message_names_the_failure_and_the_server():
    """An httpx timeout has an empty ``str``: the error still names its type and the server."""
    import httpx2

    from dra_framework.engine.claims_api import lightkube_claim_getter
    from dra_framework.kube import ApiHealth, ApiUnavailableError, RateLimitedClient, TokenBucket

    class Hung:
        async def get(self, *a, **kw):
            raise httpx2.ReadTimeout("")

    client = RateLimitedClient(Hung(), TokenBucket(100, 100), ApiHealth("https://api.example:6443"))
    get = lightkube_claim_getter(client)
    with pytest.raises(ApiUnavailableError) as exc:
        await get("default", "c")
    assert str(exc.value) == ("API server https://api.example:6443 unreachable (retriable): "
                              "ReadTimeout (no answer in time)")
    assert client.health.problem == str(exc.value)
    with pytest.raises(ValueError, match="claim namespace 'a/b' is invalid"):
        await get("a/b", "c")


async def test_clearing_claim_status_fails_at_once_while_the_api_server_is_down():
    """Unprepare clears ``status.devices`` best effort: with the server known to be unreachable
    the writer fails at once (no connect timeout inside the kubelet's unprepare call); writing
    devices during prepare still tries."""
    import httpx2

    from dra_framework.engine.claims_api import lightkube_status_writer
    from dra_framework.kube import ApiHealth, ApiUnavailableError, RateLimitedClient, TokenBucket
    from dra_framework.model import ClaimInfo

    calls = []

    class Down:
        async def patch(self, *a, **kw):
            calls.append(a)
            raise httpx2.ConnectError("All connection attempts failed")

    client = RateLimitedClient(Down(), TokenBucket(100, 100), ApiHealth("https://api.example:6443"))
    write = lightkube_status_writer(client, "d.example.com")
    info = ClaimInfo("uid-1", "default", "c")
    with pytest.raises(ApiUnavailableError):
        await write(info, [{"driver": "d.example.com", "pool": "p", "device": "x"}])
    assert len(calls) == 1 and client.health.problem
    with pytest.raises(ApiUnavailableError, match="https://api.example:6443 unreachable"):
        await write(info, [])
    assert len(calls) == 1        # no request


@pytest.mark.parametrize("args", [
    ["prepare", "--claim", "a/b/c", "--timeout", "-1"], ["prepare", "--claim", "a/b/c", "--timeout", "0"],
    ["unprepare", "--claim", "a/b/c", "--timeout", "nan"], ["watch-health", "--timeout", "-2"],
    ["watch-health", "--count", "-1"],
])
def test_kubelet_timeouts_and_counts_out_of_range_are_usage_errors(tmp_path, args):
    """A negative timeout reached the gRPC call as an instant DEADLINE_EXCEEDED."""
    r = run("kubelet", args[0], "--driver", "x.example.com", "--kubelet-root-dir", str(tmp_path), *args[1:])
    assert r.returncode == 2 and f"argument {args[-2]}: expected" in r.stderr, r.stderr


def test_state_dir_that_cannot_be_created_names_the_setting(tmp_path):
    (tmp_path / "file").write_text("")
    cfg = dead_api_config(tmp_path, stateDir=str(tmp_path / "file" / "state"))
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(EXE), "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait(lambda: "did not start" in log.read_text(), 30, "the start-up failure", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert (f"driver noapi.dra.dev did not start: stateDir: cannot create {tmp_path}/file/state/noapi.dra.dev/"
            f"example: Not a directory") in log.read_text()


def test_run_with_a_kubelet_root_too_long_for_sockets_names_the_setting(tmp_path):
    """The sockets are served from the config as read only when their paths fit; otherwise
    validation's error names the file (or env var) and kubeletRootDir, as before."""
    root = tmp_path / ("k" * 100)
    (root / "plugins_registry").mkdir(parents=True)
    cfg = dead_api_config(tmp_path, kubeletRootDir=str(root))
    for extra, env, where in (((), {}, str(cfg)),
                              ((), {"DRA_FRAMEWORK_KUBELET_ROOT_DIR": str(root)}, "env DRA_FRAMEWORK_KUBELET_ROOT_DIR")):
        r = run("run", "--config", str(cfg), *extra, env=env)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"error: {where}: kubeletRootDir: driver noapi.dra.dev (drivers[0]): "
                                   "unix socket path is"), r.stderr
    assert not [p for p in root.rglob("*") if p.is_socket()]

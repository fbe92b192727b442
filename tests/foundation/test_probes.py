"""The metrics and probe ports of ``dra-framework run``: a bind address, a connection cap and
timeouts, so a flood of idle connections neither exhausts the daemon's file descriptors (the
kubelet's gRPC calls keep working) nor blocks the probes for longer than the idle timeout; and
/readyz shows no host paths."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess

from test_cli import EXE
from test_cli_robustness import dead_api_config, free_port, http, kubelet, tmp_path, wait  # noqa: F401


def start(cfg, log, *args, nofile: int | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}

    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    with open(log, "wb") as out:
        return subprocess.Popen([str(EXE), "run", "--config", str(cfg), *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=limit)


def listening_address(port: int) -> str:
    """The local IPv4 address a TCP socket listens on ``port`` (from /proc/net/tcp)."""
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":
            return socket.inet_ntoa(bytes.fromhex(addr)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


def test_idle_connection_flood_does_not_starve_the_daemon(tmp_path):  # noqa: F811
    healthz, metrics = free_port(), free_port()
    cfg = dead_api_config(tmp_path)
    log = tmp_path / "run.log"
    proc = start(cfg, log, "--healthz-port", str(healthz), "--metrics-port", str(metrics),
                 "--bind-address", "127.0.0.1", "--http-max-connections", "8", "--http-timeout-seconds", "1",
                 nofile=160)
    flood: list[socket.socket] = []
    try:
        wait(lambda: (tmp_path / "kubelet/plugins/noapi.dra.dev/dra.sock").exists(), 30, "the DRA socket", log)
        wait(lambda: http(f"http://127.0.0.1:{healthz}/healthz")[0] == 200, 30, "/healthz", log)
        assert listening_address(healthz) == "127.0.0.1" and listening_address(metrics) == "127.0.0.1"
        for port in (healthz, metrics):
            for _ in range(300):  # idle: connect and never send a request
                flood.append(socket.create_connection(("127.0.0.1", port)))
        # The kubelet's calls still get file descriptors and answers.
        rc, out = kubelet(tmp_path, "unprepare", "--claim", "default/c1/uid-1")
        assert rc == 0 and out["claims"]["uid-1"]["error"] == "", out
        # Once the idle ones time out, probes and metrics answer again although the flood stays.
        wait(lambda: http(f"http://127.0.0.1:{healthz}/healthz")[0] == 200, 10, "/healthz during the flood", log)
        wait(lambda: "dra_framework_api_server_reachable" in http(f"http://127.0.0.1:{metrics}/metrics")[1], 10,
             "/metrics during the flood", log)
        assert proc.poll() is None
    finally:
        for s in flood:
            s.close()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    text = log.read_text()
    assert rc == 0 and "Traceback" not in text, text
    assert "connection limit reached" in text


def test_readyz_shows_no_host_paths(tmp_path):  # noqa: F811
    healthz = free_port()
    cfg = dead_api_config(tmp_path, healthzPort=healthz)
    cp = tmp_path / "kubelet" / "plugins" / "noapi.dra.dev" / "checkpoint.json"
    cp.parent.mkdir(parents=True)
    cp.write_text("garbage")
    log = tmp_path / "run.log"
    proc = start(cfg, log)
    try:
        code, body = wait(lambda: (lambda r: r if r[0] == 503 and "checkpoint" in r[1] else None)(
            http(f"http://127.0.0.1:{healthz}/readyz")), 30, "/readyz naming the checkpoint", log)
        assert str(tmp_path) not in body and "<path>" in body, body
        assert "https://127.0.0.1:9" in body, body       # URLs are not paths
        assert str(cp) in log.read_text()                 # the log has the details
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_bad_bind_address_and_busy_port_are_one_line_errors(tmp_path):  # noqa: F811
    cfg = dead_api_config(tmp_path)
    r = subprocess.run([str(EXE), "run", "--config", str(cfg), "--bind-address", "localhost"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == (
        "error: flag --bind-address: bindAddress: Value error, 'localhost' is not an IPv4 or IPv6 address"), r.stderr
    # The sockets were served from the config as read, before validation refused it: gone again,
    # with the plugin directory they made.
    assert not [p for p in (tmp_path / "kubelet").rglob("*") if p.is_socket()]
    assert not (tmp_path / "kubelet" / "plugins" / "noapi.dra.dev").exists()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        r = subprocess.run([str(EXE), "run", "--config", str(cfg), "--healthz-port", str(port),
                            "--bind-address", "127.0.0.1"], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "INFO" not in ln and "WARNING" not in ln
             and "ERROR" not in ln]
    assert r.returncode == 1 and lines == [f"error: cannot listen on 127.0.0.1 (metricsPort 0, healthzPort {port}): "
                                           "Address already in use"], r.stderr
    assert "Traceback" not in r.stderr


def test_redact_paths():
    from dra_framework.probes import redact_paths

    assert redact_paths("checkpoint /var/lib/kubelet/plugins/x/checkpoint.json moved to "
                        "'/var/lib/k/c.corrupt-1': truncated") == "checkpoint <path> moved to '<path>': truncated"
    assert redact_paths("API server https://10.0.0.1:6443/api unreachable") == \
        "API server https://10.0.0.1:6443/api unreachable"
    assert redact_paths("device (/dev/nvidia0) and [/sys/bus/pci]") == "device (<path>) and [<path>]"

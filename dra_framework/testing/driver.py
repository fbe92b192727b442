"""The real ``dra-framework run`` daemon as a test subject (docs/testing.md).

:class:`DriverProcess` runs the installed ``dra-framework`` executable with a composed-driver
config against the harness (a kube-apiserver kubeconfig and a kubelet root dir, usually the
``kubelet_shim``'s) and gives a test everything the daemon exposes: sockets, log, checkpoint,
CDI dir, metrics and probe ports, gRPC prepare/unprepare like the kubelet, and
stop / kill -9 / restart. The ``dra_driver`` pytest fixture creates them and stops them after
the test. Plain subprocess + files, so usable without pytest too.
"""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

from .k8s import free_port, wait_for

#: The settings the harness always decides (everything a test must not share with the host).
HARNESS_KEYS = ("nodeName", "kubeletRootDir", "cdiRoot", "stateDir", "kubeconfig", "metricsPort", "healthzPort")
#: Logged once per run when every configured driver was tried (dra_framework/daemon.py).
RUNNING_MARKER = "dra-framework running with"


def executable() -> str:
    """The ``dra-framework`` console script next to this interpreter (a venv), else on PATH."""
    exe = Path(sys.executable).parent / "dra-framework"
    return str(exe) if exe.exists() else "dra-framework"


def load_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A composed-driver config as a dict: a mapping (copied) or a YAML file. Relative paths in
    a file are made absolute against its folder, as ``dra-framework`` reads them (docs/config.md),
    so the config still means the same when written elsewhere."""
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config))
    import yaml

    with open(config, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config}: a composed-driver config must be a mapping")
    _absolute_paths(data, Path(config).resolve().parent)
    return data


def _absolute_paths(data: dict[str, Any], base: Path) -> None:
    """Settings paths (``PATH_KEYS``) and each backend's ``hostRoot`` and Path-typed options."""
    from ..config import PATH_KEYS

    def fix(holder: dict[str, Any], key: str) -> None:
        value = holder.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            holder[key] = str(base / value)

    for key in PATH_KEYS:
        fix(data, key)
    registry = None
    for d in data.get("drivers") or []:
        for b in d.get("backends") or []:
            opts = b.get("options")
            if not isinstance(opts, dict):
                continue
            fix(opts, "hostRoot")
            try:
                if registry is None:
                    from ..plugins import Registry

                    registry = Registry()
                fields = registry.get(b.get("name")).options.model_fields
            except Exception:  # noqa: BLE001 - not installed here: the daemon will say so
                continue
            for name, f in fields.items():
                if f.annotation in (Path, Path | None):
                    fix(opts, f.alias or name)


class DriverProcess:
    """One ``dra-framework -v run --config <workdir>/<name>.yaml`` process (not started yet).

    ``config``: the composed-driver config (dict or YAML path). The keys in :data:`HARNESS_KEYS`
    are replaced: ``nodeName``/``kubeletRootDir`` from the arguments, ``cdiRoot`` and
    ``stateDir`` under ``workdir`` (unless ``cdi_root``/``state_dir`` are given), ``kubeconfig``
    from the argument, and free ports for metrics and probes (``ports=False``: both off).
    ``env``: extra environment (e.g. :data:`~dra_framework.killpoints.KILL_AT`);
    ``NODE_NAME`` of the test's own environment is never passed on.
    """

    def __init__(self, config: Mapping[str, Any] | str | os.PathLike[str], *, workdir: str | os.PathLike[str],
                 node_name: str, kubelet_root: str | os.PathLike[str], kubeconfig: str | os.PathLike[str] | None,
                 name: str = "daemon", args: Iterable[str] = (), env: Mapping[str, str] | None = None,
                 cdi_root: str | os.PathLike[str] | None = None, state_dir: str | os.PathLike[str] | None = None,
                 ports: bool = True) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name, self.args, self.env = name, tuple(args), dict(env or {})
        cfg = load_config(config)
        cfg.update(nodeName=node_name, kubeletRootDir=str(kubelet_root),
                   cdiRoot=str(cdi_root or self.workdir / "cdi"), stateDir=str(state_dir or self.workdir / "state"),
                   kubeconfig=str(kubeconfig or ""),
                   metricsPort=free_port() if ports else 0, healthzPort=free_port() if ports else 0)
        self.config: dict[str, Any] = cfg
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._log: Any = None
        #: Every process made from this one by :meth:`clone` (the fixture stops them all).
        self.family: list[DriverProcess] = [self]
        self._write_config()

    def _write_config(self) -> None:
        import yaml

        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    # --- where things are -----------------------------------------------------------------

    @property
    def node_name(self) -> str:
        return self.config["nodeName"]

    @property
    def kubelet_root(self) -> Path:
        return Path(self.config["kubeletRootDir"])

    @property
    def cdi_dir(self) -> Path:
        return Path(self.config["cdiRoot"])

    @property
    def state_dir(self) -> Path:
        return Path(self.config["stateDir"])

    @property
    def metrics_port(self) -> int:
        return int(self.config["metricsPort"])

    @property
    def healthz_port(self) -> int:
        return int(self.config["healthzPort"])

    @property
    def drivers(self) -> list[str]:
        """The DRA driver names of the config, in order."""
        return [d["name"] for d in self.config.get("drivers", [])]

    def _driver(self, driver: str | None) -> str:
        if driver is None:
            if len(self.drivers) != 1:
                raise ValueError(f"the config has drivers {self.drivers}: name one")
            return self.drivers[0]
        return driver

    def sockets(self, driver: str | None = None):
        """``SocketPaths`` (``.registration``, ``.dra``) of ``driver`` (default: the only one)."""
        from ..kubelet.sockets import socket_paths

        return socket_paths(self._driver(driver), str(self.kubelet_root), pod_uid=self.config.get("podUID") or None)

    def checkpoint_path(self, driver: str | None = None) -> Path:
        from ..engine.checkpoint import checkpoint_path

        return checkpoint_path(self.kubelet_root, self._driver(driver))

    def checkpoint(self, driver: str | None = None) -> dict[str, dict[str, Any]]:
        """The claims in ``driver``'s checkpoint (UID → entry); ``{}`` when there is no file."""
        from ..engine.checkpoint import decode

        try:
            raw = self.checkpoint_path(driver).read_bytes()
        except FileNotFoundError:
            return {}
        return decode(raw)[0]

    def cdi_specs(self) -> list[Path]:
        """The CDI spec files in :attr:`cdi_dir` (sorted)."""
        return sorted(p for p in self.cdi_dir.glob("*") if p.suffix in (".json", ".yaml")) if self.cdi_dir.exists() else []

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> "DriverProcess":
        if self.alive() and self.proc is not None:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
        env.update(self.env)
        self.runs += 1
        self._log = open(self.log_path, "ab")
        self._log.write(f"=== {self.name}: start {self.runs} ===\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen([executable(), "-v", "run", "--config", str(self.config_path), *self.args],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Send ``sig`` (default SIGTERM: a clean stop), wait; SIGKILL after ``timeout``.
        Returns the exit status (negative: killed by that signal), None if it never ran."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> int | None:
        """``kill -9``: no cleanup at all, like a node losing the process."""
        return self.stop(signal.SIGKILL)

    def restart(self, env: Mapping[str, str] | None = None) -> "DriverProcess":
        """Stop cleanly and start again on the same dirs (``env`` replaces the extra environment)."""
        self.stop()
        if env is not None:
            self.env = dict(env)
        return self.start()

    def wait_exit(self, timeout: float = 60) -> int:
        """Wait until the process ends by itself (e.g. a kill point); returns its exit status."""
        assert self.proc is not None, f"{self.name} is not started"
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.tail()}") from None
        return self.stop()  # type: ignore[return-value]

    def clone(self, name: str, args: Iterable[str] = (), env: Mapping[str, str] | None = None,
              **settings: Any) -> "DriverProcess":
        """A second process on the same config and dirs (own log, own ports), not started:
        a second instance, ``args=("--uninstall",)``, or another ``podUID="..."`` (``settings``
        are config keys to change)."""
        other = copy.copy(self)
        other.name, other.args, other.env = name, tuple(args), dict(env if env is not None else self.env)
        other.config = {**copy.deepcopy(self.config), "metricsPort": free_port() if self.metrics_port else 0,
                        "healthzPort": free_port() if self.healthz_port else 0, **settings}
        other.config_path = self.workdir / f"{name}.yaml"
        other.log_path = self.workdir / f"{name}.log"
        other.proc, other.runs, other._log = None, 0, None
        other._write_config()
        self.family.append(other)
        return other

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def check_alive(self) -> None:
        """Raise (with the log tail) if the process has exited; lets ``k8s.wait_for(proc=...)`` fail fast."""
        if not self.alive():
            rc = self.proc.returncode if self.proc is not None else "never started"
            raise RuntimeError(f"dra-framework {self.name} exited ({rc}):\n{self.tail()}")

    def wait_running(self, timeout: float = 60) -> "DriverProcess":
        """Until this run logged that every driver was started or scheduled for a retry."""
        wait_for(lambda: self.logs().count(RUNNING_MARKER) >= self.runs, timeout, f"{self.name} start-up", proc=self)
        return self

    def wait_ready(self, timeout: float = 60) -> "DriverProcess":
        """Until ``/readyz`` answers 200 (needs the probe port)."""
        wait_for(lambda: self.probe("/readyz")[0] == 200, timeout, f"{self.name} /readyz", proc=self)
        return self

    # --- what it says ---------------------------------------------------------------------

    def logs(self) -> str:
        """The whole log of every run of this process (runs start with ``=== <name>: start N``)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.logs()[-chars:]

    def _get(self, port: int, path: str) -> tuple[int, str]:
        if not port:
            raise RuntimeError(f"{self.name}: that port is off (ports=False)")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def probe(self, path: str = "/readyz") -> tuple[int, str]:
        """``(status, body)`` of ``/healthz``, ``/livez`` or ``/readyz``."""
        return self._get(self.healthz_port, path)

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        return self._get(self.metrics_port, "/metrics")[1]

    # --- the kubelet's calls ------------------------------------------------------------------

    def prepare(self, claims: Iterable[Any], driver: str | None = None, timeout: float = 45):
        """NodePrepareResources on the DRA socket, as the kubelet calls it. ``claims``: ClaimRef,
        ``(uid, namespace, name)`` or ResourceClaim dicts. Returns ``{uid: PrepareOutcome}``
        (``.devices`` with ``.cdi_device_ids``, ``.error``); gRPC failures raise grpc.RpcError."""
        import asyncio

        from ..kubelet import client

        return asyncio.run(client.prepare(self.sockets(driver).dra, _refs(claims), timeout=timeout))

    def unprepare(self, claims: Iterable[Any], driver: str | None = None, timeout: float = 45) -> dict[str, str]:
        """NodeUnprepareResources; ``{uid: error}`` ("" = done)."""
        import asyncio

        from ..kubelet import client

        return asyncio.run(client.unprepare(self.sockets(driver).dra, _refs(claims), timeout=timeout))


def _refs(claims: Iterable[Any]) -> list[Any]:
    from ..kubelet.types import ClaimRef

    out = []
    for c in claims:
        if isinstance(c, ClaimRef):
            out.append(c)
        elif isinstance(c, Mapping):
            md = c["metadata"]
            out.append(ClaimRef(md["uid"], md.get("namespace", "default"), md["name"]))
        else:
            out.append(ClaimRef(*c))
    return out

"""Real Kubernetes components for tests: etcd + kube-apiserver, the kubelet's DRA code
(``kubelet-dra-shim``), the scheduler's structured allocator and the CDI reference library.

The Go binaries are built by ``scripts/build-harness.sh`` (``make harness``) into a cache
outside the repo; see tests/harness/README.md. Everything here is plain subprocess and
HTTP, so it is usable without pytest too; :mod:`dra_framework.testing.pytest_plugin`
wraps it in fixtures.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

DEFAULT_K8S_VERSION = "1.37.2"
BINARIES = ("etcd", "kube-apiserver", "kubelet-dra-shim", "dra-allocator", "cdi-check")


class HarnessUnavailable(RuntimeError):
    """The harness binaries are not built (or Go is missing); the message says how to fix it."""


# ---------------------------------------------------------------- locating the binaries


def k8s_version() -> str:
    return os.environ.get("DRA_HARNESS_K8S_VERSION", DEFAULT_K8S_VERSION).removeprefix("v")


def cache_root() -> Path:
    if os.environ.get("DRA_HARNESS_CACHE"):
        return Path(os.environ["DRA_HARNESS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "dra-framework" / "harness"


def bin_dir(version: str | None = None) -> Path:
    return cache_root() / f"k8s-{version or k8s_version()}" / "bin"


def find_bins(version: str | None = None) -> Path:
    """The bin dir of ``version``, or :class:`HarnessUnavailable` naming what is missing."""
    d = bin_dir(version)
    missing = [b for b in BINARIES if not os.access(d / b, os.X_OK)]
    if not missing:
        return d
    hint = "run `make harness` (scripts/build-harness.sh)"
    if shutil.which("go") is None:
        hint = "Go is not installed, so the harness cannot be built; install Go 1.26+ and " + hint
    raise HarnessUnavailable(f"Kubernetes harness binaries missing in {d}: {', '.join(missing)}; {hint}")


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose stdout+stderr go to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name, self.args, self.log_path = name, args, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        # Own process group: a Ctrl-C on pytest must not reach the children first, teardown stops them.
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 10) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Watched(Protocol):
    """A process :func:`wait_for` can watch: :class:`Process` or a ``testing.driver.DriverProcess``."""

    name: str

    def check_alive(self) -> None: ...
    def tail(self) -> str: ...


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1,
             proc: Watched | None = None) -> Any:
    """Polls ``predicate`` until it returns a truthy value; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check_alive()
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    logs = f"\n--- {proc.name} log ---\n{proc.tail()}" if proc else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}{logs}")


def pools_complete(slices: list[dict[str, Any]]) -> bool:
    """Whether ``slices`` (raw ResourceSlice JSON, e.g. the ``items`` of a list) hold at least
    one pool and every pool is complete: as many slices at the pool's newest generation as their
    ``spec.pool.resourceSliceCount``. The scheduler's allocator treats devices of an incomplete
    pool as unavailable, so allocate only after this holds
    (https://kubernetes.io/docs/concepts/scheduling-eviction/dynamic-resource-allocation/#resourceslice).
    """
    pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        pools.setdefault((s["spec"]["driver"], s["spec"]["pool"]["name"]), []).append(s["spec"]["pool"])
    for members in pools.values():
        newest = max(int(p.get("generation", 0)) for p in members)
        current = [p for p in members if int(p.get("generation", 0)) == newest]
        if len(current) != int(current[0].get("resourceSliceCount", 1)):
            return False
    return bool(pools)


def run_tool(path: Path, args: Iterable[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- certificates


def write_pki(d: Path) -> dict[str, Path]:
    """A throwaway CA, a serving cert for 127.0.0.1/localhost, an admin client cert
    (O=system:masters, so RBAC allows everything) and the service-account key pair,
    like controller-runtime's envtest. ``cryptography`` is imported here only, so the
    pytest plugin stays cheap to load."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def cert(subject, key, issuer, issuer_key, *, ca=False, server=False):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        else:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    files: dict[str, Path] = {}

    def write(fname: str, data: bytes) -> None:
        files[fname] = d / fname
        files[fname].write_bytes(data)
        os.chmod(files[fname], 0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("dra-harness-ca")
    write("ca.crt", cert(ca_name, ca_key, ca_name, ca_key, ca=True))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    write("apiserver.crt", cert(name("kube-apiserver"), srv_key, ca_name, ca_key, server=True))
    write("apiserver.key", pem_key(srv_key))
    adm_key = ec.generate_private_key(ec.SECP256R1())
    write("admin.crt", cert(name("admin", "system:masters"), adm_key, ca_name, ca_key))
    write("admin.key", pem_key(adm_key))
    # Service-account tokens are signed with RS256 by default: an RSA key.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("sa.key", pem_key(sa_key))
    write("sa.pub", sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return files


def write_kubeconfig(path: Path, url: str, pki: dict[str, Path]) -> None:
    # JSON is valid YAML; client-go, lightkube and kubectl all read it.
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "harness",
        "clusters": [{"name": "harness", "cluster": {"server": url, "certificate-authority": str(pki["ca.crt"])}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(pki["admin.crt"]),
                                             "client-key": str(pki["admin.key"])}}],
        "contexts": [{"name": "harness", "context": {"cluster": "harness", "user": "admin"}}],
    }
    path.write_text(json.dumps(cfg, indent=2))


# ---------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, every DRA feature gate of the version
    on, every served resource.k8s.io version enabled. Call :meth:`start`, then
    :meth:`stop`. Logs go to ``log_dir``.

    ``etcd_args``/``apiserver_args`` are appended to the default command lines (a repeated flag
    overrides the default: the last one wins) and ``etcd_env``/``apiserver_env`` are added to
    the inherited environment (e.g. ``GOMEMLIMIT``); all default to nothing, i.e. the
    control plane the tests use."""

    def __init__(self, bins: Path, workdir: Path, version: str, *,
                 etcd_args: Iterable[str] = (), apiserver_args: Iterable[str] = (),
                 etcd_env: dict[str, str] | None = None, apiserver_env: dict[str, str] | None = None):
        self.bins, self.workdir, self.version = bins, workdir, version
        self.etcd_args, self.apiserver_args = list(etcd_args), list(apiserver_args)
        self.etcd_env, self.apiserver_env = dict(etcd_env or {}), dict(apiserver_env or {})
        self.log_dir = workdir / "logs"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.url = ""
        self.procs: list[Process] = []
        self._clients: list[Any] = []

    @property
    def feature_gates(self) -> str:
        """The --feature-gates value used for all components (computed by the shim binary)."""
        f = self.bins / "dra-gates.txt"
        if f.exists():
            return f.read_text().strip()
        return run_tool(self.bins / "kubelet-dra-shim", ["--print-dra-gates"]).stdout.strip()

    @property
    def runtime_config(self) -> str:
        f = self.bins / "resource-api-versions.txt"
        versions = f.read_text().split() if f.exists() else ["v1", "v1beta1", "v1beta2"]
        return ",".join(f"resource.k8s.io/{v}=true" for v in versions)

    def start(self, timeout: float = 120) -> "ControlPlane":
        pki = write_pki(self.workdir / "pki")
        etcd_port, apiserver_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.procs.append(Process("etcd", [
            str(self.bins / "etcd"), f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
            "--unsafe-no-fsync=true", "--log-level=warn", *self.etcd_args,
        ], self.log_dir / "etcd.log", env=_env(self.etcd_env)))
        wait_for(lambda: _http_ok(f"{etcd_url}/health"), 30, "etcd /health", proc=self.procs[0])

        self.url = f"https://127.0.0.1:{apiserver_port}"
        args = [
            str(self.bins / "kube-apiserver"),
            f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={apiserver_port}", f"--cert-dir={self.workdir / 'certs'}",
            f"--tls-cert-file={pki['apiserver.crt']}", f"--tls-private-key-file={pki['apiserver.key']}",
            f"--client-ca-file={pki['ca.crt']}",
            "--authorization-mode=RBAC",
            # No controller-manager creates the `default` ServiceAccount, so that admission
            # would reject every pod (envtest does the same).
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer={self.url}", f"--service-account-key-file={pki['sa.pub']}",
            f"--service-account-signing-key-file={pki['sa.key']}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            f"--feature-gates={self.feature_gates}", f"--runtime-config={self.runtime_config}",
            # A lone test apiserver: no priority-and-fairness queueing or endpoint reconciling.
            "--enable-priority-and-fairness=false", "--endpoint-reconciler-type=none",
            "--v=1", *self.apiserver_args,
        ]
        self.procs.append(Process("kube-apiserver", args, self.log_dir / "kube-apiserver.log",
                                  env=_env(self.apiserver_env)))
        write_kubeconfig(self.kubeconfig, self.url, pki)
        ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        ctx.load_cert_chain(str(pki["admin.crt"]), str(pki["admin.key"]))
        self._ssl = ctx
        wait_for(lambda: _http_ok(f"{self.url}/readyz", ctx), timeout, "kube-apiserver /readyz",
                 interval=0.5, proc=self.procs[1])
        return self

    def get(self, path: str) -> Any:
        """GET an API path as admin, parsed JSON (e.g. ``/apis/resource.k8s.io``)."""
        with urllib.request.urlopen(self.url + path, context=self._ssl, timeout=30) as r:
            return json.load(r)

    def client(self, *, asynchronous: bool = False):
        """A lightkube Client (or AsyncClient) authenticated as cluster admin."""
        from lightkube import AsyncClient, Client, KubeConfig

        config = KubeConfig.from_file(str(self.kubeconfig))
        c = AsyncClient(config=config) if asynchronous else Client(config=config)
        if not asynchronous:
            self._clients.append(c)
        return c

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.tail(lines)}" for p in self.procs)

    def stop(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        for p in reversed(self.procs):
            p.stop()


def _env(extra: dict[str, str]) -> dict[str, str] | None:
    """The inherited environment plus ``extra``; None (inherit unchanged) when there is nothing to add."""
    return {**os.environ, **extra} if extra else None


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


# ---------------------------------------------------------------- kubelet shim


class ShimError(RuntimeError):
    """The shim's control API returned an error (the kubelet's own error text)."""


class KubeletShim:
    """The kubelet's plugin manager + DRA manager on a private kubelet root dir.

    ``root`` has the kubelet's layout: ``plugins_registry/`` (drivers put their
    registration sockets here), ``plugins/`` (their DRA service sockets, by convention
    ``plugins/<driver>/dra.sock``) and the checkpoint ``dra_manager_state``.
    """

    def __init__(self, bins: Path, kubeconfig: Path, node_name: str, root: Path, log_dir: Path,
                 feature_gates: str = ""):
        self.bins, self.kubeconfig, self.node_name = bins, kubeconfig, node_name
        self.root, self.log_dir, self.feature_gates = root, log_dir, feature_gates
        self.proc: Process | None = None
        self.url = ""
        self.starts = 0

    @property
    def registry_dir(self) -> Path:
        return self.root / "plugins_registry"

    @property
    def plugins_dir(self) -> Path:
        return self.root / "plugins"

    def start(self, timeout: float = 30) -> "KubeletShim":
        (self.root / "plugins_registry").mkdir(parents=True, exist_ok=True)
        (self.root / "plugins").mkdir(parents=True, exist_ok=True)
        port_file = self.root.parent / f".{self.root.name}-shim.port"
        port_file.unlink(missing_ok=True)
        self.starts += 1
        args = [str(self.bins / "kubelet-dra-shim"), f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={self.root}", f"--node-name={self.node_name}", f"--port-file={port_file}", "--v=4"]
        if self.feature_gates:
            args.append(f"--feature-gates={self.feature_gates}")
        self.proc = Process("kubelet-dra-shim", args, self.log_dir / f"kubelet-dra-shim-{self.node_name}-{self.starts}.log")
        port = wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout,
                        "kubelet-dra-shim control port", proc=self.proc)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def restart(self) -> "KubeletShim":
        """Stop and start again on the same root: a kubelet restart. The DRA manager reloads
        its checkpoint and the plugin watcher re-registers sockets still in the registry."""
        self.stop()
        return self.start()

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        if self.proc is None:
            raise ShimError("kubelet-dra-shim is not started")
        self.proc.check_alive()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            try:
                msg = json.load(e).get("error", "")
            except ValueError:
                msg = str(e)
            raise ShimError(f"{method} {path}: {msg}") from None

    def registered(self) -> dict[str, Any]:
        """``{"drivers": {name: {endpoint, versions, since}}, "rejections": [...], "events": [...]}``.
        Rejections carry the kubelet's error text (failed ValidatePlugin/RegisterPlugin)."""
        return self._call("GET", "/registered")

    def wait_registered(self, driver: str, timeout: float = 30) -> dict[str, Any]:
        """Waits until ``driver`` is registered; returns its entry. Fails early with the
        kubelet's reason if the driver was rejected meanwhile."""
        since = len(self.registered()["events"])

        def check():
            snap = self.registered()
            if driver in snap["drivers"]:
                return snap["drivers"][driver]
            new_rejections = [e for e in snap["events"][since:] if e.get("error") and e["driver"] == driver]
            if new_rejections:
                raise AssertionError(f"kubelet rejected DRA driver {driver}: {new_rejections[-1]['error']}")
            return None

        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"DRA driver {driver} not registered with the kubelet within {timeout}s: "
                                   f"{json.dumps(self.registered(), indent=1)[-2000:]}")
            time.sleep(0.1)

    def prepare_pod(self, namespace: str, name: str) -> "PreparedPod":
        """Runs the kubelet's PrepareResources for the pod (read from the apiserver), then
        GetResources per container. Returns ``{claim name: [CDI device IDs]}`` with the
        full answer in ``.claims`` and ``.containers`` (CDI IDs per container, as the
        kubelet would pass them to the runtime). Raises :class:`ShimError` with the
        kubelet's error text on failure."""
        return PreparedPod(self._call("POST", "/prepare", {"namespace": namespace, "name": name}))

    def resources(self, namespace: str, name: str) -> "PreparedPod":
        """What the kubelet recorded for an already prepared pod (no driver call)."""
        return PreparedPod(self._call("POST", "/resources", {"namespace": namespace, "name": name}))

    def unprepare_pod(self, namespace: str, name: str) -> None:
        self._call("POST", "/unprepare", {"namespace": namespace, "name": name})

    def health(self, namespace: str, name: str) -> dict[str, Any]:
        """``{"containers": {name: [allocatedResourcesStatus entries]}, "updates": [...]}``:
        what the kubelet would write into the pod's container statuses from the drivers'
        health streams, and the pod-status updates the DRA manager requested."""
        return self._call("POST", "/health", {"namespace": namespace, "name": name})

    def logs(self, lines: int = 60) -> str:
        return self.proc.tail(lines) if self.proc else ""


class PreparedPod(dict):
    """``{claim name: [CDI IDs]}`` plus the shim's full answer."""

    def __init__(self, raw: dict[str, Any]):
        super().__init__({name: c["cdiDevices"] for name, c in raw["claims"].items()})
        self.raw = raw
        self.pod_uid: str = raw["podUID"]
        self.claims: dict[str, Any] = raw["claims"]
        self.containers: dict[str, list[str]] = raw["containers"]

    def by_uid(self) -> dict[str, list[str]]:
        return {c["uid"]: c["cdiDevices"] for c in self.claims.values()}


# ---------------------------------------------------------------- allocator, cdi-check


class AllocationFailed(AssertionError):
    """The structured allocator found no allocation (or rejected the input)."""


class Allocator:
    def __init__(self, bins: Path, kubeconfig: Path):
        self.bins, self.kubeconfig = bins, kubeconfig

    def allocate(self, namespace: str, claim: str, node: str, pod: tuple[str, str] | None = None,
                 dry_run: bool = False) -> dict[str, Any]:
        """Allocates the claim for ``node`` with the scheduler's structured allocator and
        writes ``status.allocation`` (+ ``reservedFor`` the pod) as the scheduler does.
        Returns the allocation result dict; raises :class:`AllocationFailed` with the tool's message."""
        args = [f"--kubeconfig={self.kubeconfig}", f"--namespace={namespace}", f"--claim={claim}", f"--node={node}"]
        if pod:
            args.append(f"--pod={pod[0]}/{pod[1]}")
        if dry_run:
            args.append("--dry-run")
        r = run_tool(self.bins / "dra-allocator", args)
        if r.returncode != 0:
            raise AllocationFailed(r.stderr.strip() or f"dra-allocator exited {r.returncode}")
        return json.loads(r.stdout)["allocation"]


def allocate_batch(bins: Path, scenarios: list[dict[str, Any]], timeout: float = 600) -> list[dict[str, Any]]:
    """Runs the scheduler's structured allocator offline (``dra-allocator --batch``, no
    apiserver) over ``scenarios``: ``[{"name", "nodeName" | "node", "slices", "classes",
    "claims" (already allocated, in use), "cases": [{"name", "claim", "check"?}]}]``.
    Returns one dict per case, in order: ``{"scenario", "case", "allocated", "allocation",
    "error", "check"?: {"ok", "error", "allocation"}}``; ``check`` (an AllocationResult
    proposal) passes when the allocator, with only the proposed devices free, allocates exactly
    them (tests/harness/tools/cmd/dra-allocator/batch.go). Raises AssertionError on bad input."""
    r = subprocess.run([str(bins / "dra-allocator"), "--batch", "-"], input=json.dumps({"scenarios": scenarios}),
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(r.stderr.strip() or f"dra-allocator --batch exited {r.returncode}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def cdi_check(bins: Path, cdi_dir: str | os.PathLike, ids: Iterable[str]) -> dict[str, Any]:
    """Loads ``cdi_dir`` with the CDI reference library like a container runtime, resolves
    ``ids`` and injects them into an empty OCI spec. Returns ``{"devices": {id: spec file},
    "edits": {env, mounts, deviceNodes, hooks, ...}}``; raises AssertionError with the
    tool's message if a spec is invalid or an ID does not resolve."""
    r = run_tool(bins / "cdi-check", [f"--spec-dir={cdi_dir}", *ids])
    if r.returncode != 0:
        raise AssertionError(r.stderr.strip() or f"cdi-check exited {r.returncode}")
    return json.loads(r.stdout)

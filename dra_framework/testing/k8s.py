"""Real Kubernetes components for tests: etcd + kube-apiserver, the kubelet's DRA code
(``kubelet-dra-shim``), the scheduler's structured allocator and the CDI reference library.

The Go binaries are built by ``scripts/build-harness.sh`` (``make harness``) into a cache
outside the repo; see tests/harness/README.md. Everything here is plain subprocess and
HTTP, so it is usable without pytest too; :mod:`dra_framework.testing.pytest_plugin`
wraps it in fixtures. Processes and binaries live in :mod:`.processes`, the kubelet shim in
:mod:`.kubelet_shim`; both are re-exported here.
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from .kubelet_shim import KubeletShim, PreparedPod, ShimError
from .processes import (BINARIES, DEFAULT_K8S_VERSION, HarnessUnavailable, Process, Watched, bin_dir, cache_root,
                        find_bins, free_port, k8s_version, pools_complete, run_tool, wait_for)

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


__all__ = [
    "BINARIES", "DEFAULT_K8S_VERSION", "AllocationFailed", "Allocator", "ControlPlane", "HarnessUnavailable",
    "KubeletShim", "PreparedPod", "Process", "ShimError", "Watched", "bin_dir", "cache_root", "cdi_check",
    "find_bins", "free_port", "k8s_version", "pools_complete", "run_tool", "wait_for", "write_kubeconfig", "write_pki",
]

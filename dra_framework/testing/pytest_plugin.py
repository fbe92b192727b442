"""pytest fixtures for testing DRA drivers against real Kubernetes components.

Loaded automatically (entry point ``pytest11: dra_framework_k8s``), so importing this
module must stay cheap and side-effect free: everything heavy is imported inside the
fixtures. Reference: tests/harness/README.md.

Fixtures
--------
``k8s_version``       Kubernetes version (env ``DRA_HARNESS_K8S_VERSION``, default 1.37.2).
``harness_bins``      Path of the built binaries. Skips when they are missing; with
                      ``CI=true`` it fails instead, so CI can never silently skip.
``kube_apiserver``    (session) etcd + kube-apiserver: ``.kubeconfig``, ``.url``,
                      ``.version``, ``.client()``, ``.log_dir``, ``.feature_gates``.
``k8s_objects``       An :class:`~dra_framework.testing.objects.Objects` bound to the
                      apiserver; everything it creates is deleted after the test.
``k8s_node``          ``k8s_node(name, labels=None) -> Node dict`` (``["metadata"]["uid"]``).
``device_class``      ``device_class(name, driver, cel=None) -> DeviceClass dict``.
``resource_claim``    ``resource_claim(ns, name, spec_dict) -> ResourceClaim dict``.
``resource_slice``    ``resource_slice(spec_dict, name=None) -> ResourceSlice dict``.
``pod``               ``pod(ns, name, claims=[...], node=None) -> Pod dict``.
``kubelet_shim``      ``kubelet_shim(node_name="node-1") -> KubeletShim`` (started; the
                      Node is created if missing). Stopped after the test.
``allocator``         ``allocator.allocate(ns, claim, node, pod=(ns, name) | None) -> dict``.
``cdi_check``         ``cdi_check(cdi_dir, ids) -> {"devices": ..., "edits": ...}``.
``dra_driver``        ``dra_driver(config, shim=None, name="daemon", start=True, wait=True, **kw)
                      -> DriverProcess``: the real ``dra-framework run`` against the harness
                      (see :mod:`dra_framework.testing.driver`). Stopped after the test.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dra-framework", "dra-framework backend conformance (docs/testing.md)")
    group.addoption("--dra-conformance", metavar="BACKEND", default=None,
                    help="run the backend conformance suite shipped in dra_framework.testing.conformance "
                         "for this backend (needs --dra-config)")
    group.addoption("--dra-config", metavar="FILE", default=None,
                    help="composed-driver config (YAML) with a driver that uses the --dra-conformance backend")
    group.addoption("--dra-leftovers", metavar="MODULE:FUNCTION", default=None,
                    help="the backend's leftovers probe: called with the DriverProcess, returns JSON-able "
                         "state that must be the same before a claim and after its unprepare")
    group.addoption("--dra-host", metavar="MODULE:CALLABLE", default=None,
                    help="simulated hardware: called with each copied hostRoot, returns a context manager "
                         "held while the daemons run (e.g. dra_framework.testing.hosttree:FakePciKernel)")
    group.addoption("--dra-kill-sample", metavar="N", type=int, default=6,
                    help="kill -9 at this many kill points per sampled claim (0: every point; default 6)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8s: needs the Go-built Kubernetes harness (etcd, kube-apiserver, kubelet shim, allocator)")
    if config.getoption("dra_conformance", None):
        if not config.getoption("dra_config"):
            raise pytest.UsageError("--dra-conformance needs --dra-config=<composed-driver config.yaml>")
        from .conformance import SUITE_DIR

        # Collect the shipped suite: instead of testpaths/the current dir, or next to explicit args.
        if config.args_source == pytest.Config.ArgsSource.ARGS:
            config.args.append(str(SUITE_DIR))
        else:
            config.args[:] = [str(SUITE_DIR)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On failure, attach the tails of the harness process logs to the report."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    cp = funcargs.get("kube_apiserver")
    if cp is not None and hasattr(cp, "logs"):
        rep.sections.append(("harness: control plane logs", cp.logs()))
    shims = funcargs.get("kubelet_shim")
    for shim in getattr(shims, "started", []):
        rep.sections.append((f"harness: kubelet-dra-shim {shim.node_name} ({shim.proc.log_path})", shim.logs()))
    for drv in getattr(funcargs.get("dra_driver"), "started", []):
        rep.sections.append((f"harness: dra-framework {drv.name} ({drv.log_path})", drv.tail()))


@pytest.fixture(scope="session")
def k8s_version() -> str:
    from . import k8s

    return k8s.k8s_version()


@pytest.fixture(scope="session")
def harness_bins(k8s_version: str) -> Path:
    from . import k8s

    try:
        return k8s.find_bins(k8s_version)
    except k8s.HarnessUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Kubernetes harness is unavailable: {e}", pytrace=False)
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def kube_apiserver(harness_bins: Path, k8s_version: str, tmp_path_factory: pytest.TempPathFactory):
    from . import k8s

    cp = k8s.ControlPlane(harness_bins, tmp_path_factory.mktemp("kube-apiserver"), k8s_version)
    try:
        cp.start()
    except Exception as e:
        cp.stop()
        pytest.fail(f"control plane did not start: {e}\n{cp.logs()}", pytrace=False)
    yield cp
    cp.stop()


@pytest.fixture
def k8s_objects(kube_apiserver):
    from .objects import Objects

    objs = Objects(kube_apiserver.client())
    yield objs
    errors = objs.cleanup()
    if errors:
        # Not a test failure, but leftovers can confuse later tests in the session.
        print("harness cleanup errors:\n  " + "\n  ".join(errors))


@pytest.fixture
def k8s_node(k8s_objects):
    return k8s_objects.node


@pytest.fixture
def device_class(k8s_objects):
    return k8s_objects.device_class


@pytest.fixture
def resource_claim(k8s_objects):
    return k8s_objects.resource_claim


@pytest.fixture
def resource_slice(k8s_objects):
    return k8s_objects.resource_slice


@pytest.fixture
def pod(k8s_objects):
    return k8s_objects.pod


class _ShimFactory:
    def __init__(self, bins: Path, cp, objects, log_dir: Path):
        self.bins, self.cp, self.objects, self.log_dir = bins, cp, objects, log_dir
        self.started: list = []
        self._roots: list[str] = []

    def __call__(self, node_name: str = "node-1", create_node: bool = True):
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Node

        from . import k8s

        if create_node:
            try:
                self.objects.client.get(Node, node_name)
            except ApiError:
                self.objects.node(node_name)
        # Unix socket paths are limited to 108 bytes; pytest's tmp paths can be longer
        # than that once a driver appends plugins_registry/<driver>-reg.sock.
        root = tempfile.mkdtemp(prefix="dra-kubelet-")
        self._roots.append(root)
        shim = k8s.KubeletShim(self.bins, self.cp.kubeconfig, node_name, Path(root), self.log_dir,
                               feature_gates=self.cp.feature_gates)
        self.started.append(shim)
        return shim.start()

    def close(self) -> None:
        for shim in self.started:
            shim.stop()
        for root in self._roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def kubelet_shim(harness_bins, kube_apiserver, k8s_objects, tmp_path):
    factory = _ShimFactory(harness_bins, kube_apiserver, k8s_objects, tmp_path / "logs")
    yield factory
    factory.close()


@pytest.fixture
def allocator(harness_bins, kube_apiserver):
    from . import k8s

    return k8s.Allocator(harness_bins, kube_apiserver.kubeconfig)


@pytest.fixture
def cdi_check(harness_bins):
    from . import k8s

    def check(cdi_dir, ids):
        return k8s.cdi_check(harness_bins, cdi_dir, ids)

    return check


class _DriverFactory:
    def __init__(self, shims: _ShimFactory, cp, tmp_path: Path):
        self.shims, self.cp, self.tmp_path = shims, cp, tmp_path
        self.made: list = []

    @property
    def started(self) -> list:
        return [p for d in self.made for p in d.family]

    def __call__(self, config, shim=None, *, name: str = "daemon", start: bool = True, wait: bool = True, **kw):
        from .driver import DriverProcess, load_config

        config = load_config(config)
        if shim is None:
            shim = self.shims(config.get("nodeName") or "node-1")
        drv = DriverProcess(config, workdir=self.tmp_path / "dra-driver" / name, node_name=shim.node_name,
                            kubelet_root=shim.root, kubeconfig=self.cp.kubeconfig, name=name, **kw)
        self.made.append(drv)
        if start:
            drv.start()
            if wait:
                drv.wait_running()
        return drv

    def close(self) -> None:
        for drv in reversed(self.started):
            drv.stop()


@pytest.fixture
def dra_driver(kubelet_shim, kube_apiserver, tmp_path):
    factory = _DriverFactory(kubelet_shim, kube_apiserver, tmp_path)
    yield factory
    factory.close()

"""Fixtures of the conformance suite. ``conformance_subject`` is one daemon for the whole run:
the backend's config with every device pinned by an attribute, on its own node and kubelet."""
from __future__ import annotations

import contextlib
import shutil
import warnings
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from . import support

NODE = "dra-conformance"


@pytest.fixture(scope="session")
def conformance_target(pytestconfig: pytest.Config) -> support.Target:
    backend = pytestconfig.getoption("dra_conformance")
    if not backend:
        pytest.skip("the conformance suite runs with --dra-conformance=<backend> --dra-config=<file>")
    try:
        return support.select_target(pytestconfig.getoption("dra_config"), backend)
    except (OSError, ValueError) as e:
        pytest.fail(f"--dra-config: {e}", pytrace=False)


@pytest.fixture(scope="session")
def conformance_discovery(conformance_target, tmp_path_factory) -> support.Discovery:
    return support.discover_twice(conformance_target, tmp_path_factory.mktemp("discover"), NODE)


@pytest.fixture(scope="session")
def conformance_probe(pytestconfig) -> Callable[[Any], Any] | None:
    return support.load_callable("--dra-leftovers", pytestconfig.getoption("dra_leftovers"))


@pytest.fixture(scope="session")
def conformance_host(pytestconfig) -> Callable[[Path], Any] | None:
    return support.load_callable("--dra-host", pytestconfig.getoption("dra_host"))


class Harness:
    """Shims, nodes and objects for the session (the per-test fixtures are function-scoped)."""

    def __init__(self, bins: Path, cp: Any, workdir: Path, host: Callable[[Path], Any] | None = None) -> None:
        from ..objects import Objects

        self.bins, self.cp, self.workdir, self.host = bins, cp, workdir, host
        self.held = contextlib.ExitStack()
        self.objects = Objects(cp.client())
        self.shims: list[Any] = []
        self.roots: list[str] = []
        self.drivers: list[Any] = []

    def shim(self, node: str):
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Node

        from ..k8s import KubeletShim

        try:
            self.objects.client.get(Node, node)
        except ApiError:
            self.objects.node(node)
        root = tempfile.mkdtemp(prefix="dra-kubelet-")  # unix socket paths stay short
        self.roots.append(root)
        shim = KubeletShim(self.bins, self.cp.kubeconfig, node, Path(root), self.workdir / "logs",
                           feature_gates=self.cp.feature_gates)
        self.shims.append(shim)
        return shim.start()

    def host_dir(self, name: str) -> Path:
        """Where the host-tree copies of daemon ``name`` go (next to its workdir)."""
        d = self.workdir / f"{name}-hosts"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def driver(self, config: dict[str, Any], shim: Any, name: str, **kw: Any):
        """A DriverProcess (not started); ``--dra-host`` runs on each of its host-tree copies."""
        from ..driver import DriverProcess

        if self.host is not None:
            for root in support.host_copies(config, self.workdir):
                self.held.enter_context(self.host(root))

        drv = DriverProcess(config, workdir=self.workdir / name, node_name=shim.node_name, kubelet_root=shim.root,
                            kubeconfig=self.cp.kubeconfig, name=name, **kw)
        self.drivers.append(drv)
        return drv

    def close(self) -> None:
        for d in self.drivers:
            for p in d.family:
                p.stop()
        self.held.close()
        for s in self.shims:
            s.stop()
        self.objects.cleanup()
        for r in self.roots:
            shutil.rmtree(r, ignore_errors=True)


@pytest.fixture(scope="session")
def conformance_harness(harness_bins, kube_apiserver, tmp_path_factory, conformance_host):
    h = Harness(harness_bins, kube_apiserver, tmp_path_factory.mktemp("conformance"), conformance_host)
    yield h
    h.close()


@dataclass
class Subject:
    target: support.Target
    driver: str                     # the DRA driver name
    proc: Any                       # DriverProcess
    shim: Any                       # KubeletShim
    harness: Harness
    device_class: str
    pins: dict[str, str]            # dev-<i> -> published "pool/device"
    published: support.Published
    baseline: dict[str, Any]        # support.snapshot() after the warm-up claims
    probe: Callable[[Any], Any] | None
    points: dict[str, list[str]] = field(default_factory=dict)  # warm-up pin -> its kill points
    warmup_files: list[str] = field(default_factory=list)       # state files the warm-up created
    live: dict[str, Any] = field(default_factory=dict)          # claims not deleted yet

    @property
    def node(self) -> str:
        return self.shim.node_name

    def snapshot(self) -> dict[str, Any]:
        return support.snapshot(self.proc, self.driver, self.probe)

    def claim(self, name: str, pins: list[str], configs: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """Create a ResourceClaim pinned to ``pins`` in :data:`support.NAMESPACE` (unprepared and
        deleted after the test if the test did not)."""
        obj = self.harness.objects.resource_claim(support.NAMESPACE, name,
                                                  support.pinned_claim(self.device_class, pins, configs))
        self.live[name] = obj
        return obj

    def cleanup(self) -> None:
        """Unprepare and delete the claims a (failed) test left, so the next test starts clean."""
        refs = [self.ref(c) for c in self.live.values()]
        if refs:
            if not self.proc.alive():
                self.restart()
            self.proc.unprepare(refs)
        for name in list(self.live):
            self.delete_claim(name)

    def allocate(self, name: str, allocator: Any, dry_run: bool = False) -> dict[str, Any]:
        return allocator.allocate(support.NAMESPACE, name, self.node, dry_run=dry_run)

    def delete_claim(self, name: str) -> None:
        """Delete the claim (finalizer first, as nothing else removes it) so its devices are free."""
        from lightkube.resources.resource_v1 import ResourceClaim
        from lightkube.types import PatchType

        from lightkube import ApiError

        client = self.harness.objects.client
        self.live.pop(name, None)
        try:
            client.patch(ResourceClaim, name, {"metadata": {"finalizers": None}}, namespace=support.NAMESPACE,
                         patch_type=PatchType.MERGE)
            client.delete(ResourceClaim, name, namespace=support.NAMESPACE)
        except ApiError as e:
            if e.status.code != 404:
                raise

    def pins_in_order(self) -> list[str]:
        return sorted(self.pins, key=lambda p: int(p.split("-")[1]))

    def compatible(self, n: int) -> list[str]:
        """Up to ``n`` pins that can be allocated at the same time, spread over the first group."""
        by_key = {k: p for p, k in self.pins.items()}
        group = support.batches(self.published, [self.pins[p] for p in self.pins_in_order()])[0]
        step = max(1, len(group) // n)
        return [by_key[k] for k in group[::step][:n]]

    def prepared(self, outcome: dict[str, Any]) -> dict[str, list[str]]:
        """``{uid: CDI IDs}`` of a prepare outcome; fails with the driver's error text."""
        errors = {uid: o.error for uid, o in outcome.items() if o.error}
        assert not errors, f"NodePrepareResources failed: {errors}"
        return {uid: sorted(i for d in o.devices for i in d.cdi_device_ids) for uid, o in outcome.items()}

    def assert_clean(self, what: str) -> None:
        lines = support.diff(self.baseline, self.snapshot())
        assert not lines, f"{what} left something behind:\n  " + "\n  ".join(lines)

    def ref(self, claim: dict[str, Any]):
        from ...kubelet.types import ClaimRef

        md = claim["metadata"]
        return ClaimRef(md["uid"], md["namespace"], md["name"])

    def restart(self, env: dict[str, str] | None = None) -> None:
        """Start the daemon again with ``env`` (kill -9 first when it runs: it is idle, and a clean
        stop would only cost time)."""
        if self.proc.alive():
            self.proc.kill()
        self.proc.env = dict(env or {})
        self.proc.start().wait_running(120)


#: Claims (one device each, spread over the devices) prepared and unprepared before the tests:
#: their kill points are counted, and state a backend creates on first use becomes the baseline.
WARMUP = 6


@pytest.fixture(scope="session")
def conformance_subject(conformance_target, conformance_discovery, conformance_harness, conformance_probe,
                        allocator_session):
    """The backend's daemon with every device pinned (``conformance.dra.dev/device``), serving,
    after a warm-up of :data:`WARMUP` claims."""
    from ...killpoints import KILL_LOG, read_log
    from ..k8s import wait_for

    t, h = conformance_target, conformance_harness
    rules, ids = support.pin_rules(conformance_discovery)
    cfg = support.with_rules(t.driver_config(h.host_dir("subject"), janitorIntervalSeconds=3600), t.backend, rules)
    shim = h.shim(NODE)
    log = h.workdir / "killpoints.log"
    drv = h.driver(cfg, shim, "subject", env={KILL_LOG: str(log)})
    drv.start().wait_running(120)
    shim.wait_registered(t.driver, timeout=120)
    want = sorted(k.split("/", 1)[1] for k in conformance_discovery.first)
    pub = wait_for(lambda: (lambda p: p if p.names == want else None)(support.published(h.cp, t.driver, NODE)),
                   120, f"the ResourceSlices of {t.driver} to list every discovered device", proc=drv)
    cls = f"dra-conformance.{t.driver}"
    h.objects.device_class(cls, t.driver)
    s = Subject(t, t.driver, drv, shim, h, cls, pub.pinned(), pub, {}, conformance_probe)

    before = s.snapshot()
    pins = s.pins_in_order()
    for pin in pins[::max(1, len(pins) // WARMUP)][:WARMUP]:
        name = f"warmup-{pin}"
        s.claim(name, [pin])
        s.allocate(name, allocator_session)
        ref = s.ref(h.objects.get("ResourceClaim", name, support.NAMESPACE))
        seen = len(read_log(log))
        s.prepared(drv.prepare([ref]))
        assert drv.unprepare([ref]) == {ref.uid: ""}, f"warm-up: unprepare of the claim on {s.pins[pin]} failed"
        s.points[pin] = read_log(log)[seen:]
        s.delete_claim(name)
    after = s.snapshot()
    for key in ("checkpoint claims", "CDI spec files", "backend probe"):
        assert after.get(key) == before.get(key), f"warm-up claims left {key}: {before.get(key)} -> {after.get(key)}"
    s.warmup_files = sorted(set(after["state dir files"]) - set(before["state dir files"]))
    if s.warmup_files:
        warnings.warn(f"state files the first claims created, taken as the backend's baseline: {s.warmup_files}",
                      stacklevel=1)
    s.baseline = after
    return s


@pytest.fixture(scope="session")
def allocator_session(harness_bins, kube_apiserver):
    from ..k8s import Allocator

    return Allocator(harness_bins, kube_apiserver.kubeconfig)


@pytest.fixture(autouse=True)
def _conformance_cleanup(request):
    """After each test that used the subject: unprepare and delete what it left."""
    yield
    if "conformance_subject" in request.fixturenames:
        request.getfixturevalue("conformance_subject").cleanup()

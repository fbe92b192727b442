"""The kubelet's DRA code for tests: :class:`KubeletShim` drives the ``kubelet-dra-shim`` binary
(the kubelet's plugin manager and DRA manager on a private root dir) through its control API.
Re-exported by :mod:`dra_framework.testing.k8s`."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .processes import Process, wait_for

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

    def wait_deregistered(self, driver: str, timeout: float = 30) -> None:
        """Waits until ``driver`` is no longer registered. Call it after stopping a driver that is
        started again next: the kubelet notices a removed registration socket up to a second
        later, and until then :meth:`wait_registered` would return the old instance's entry."""
        wait_for(lambda: driver not in self.registered()["drivers"], timeout,
                 f"the kubelet to deregister DRA driver {driver}", proc=self.proc)

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

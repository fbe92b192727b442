"""Creating (and cleaning up) the API objects a DRA test needs: Nodes, DeviceClasses,
ResourceClaims, ResourceSlices and Pods, as plain dicts through lightkube.

The harness runs no controller-manager, so nothing garbage-collects: :meth:`Objects.cleanup`
deletes what was created, stripping finalizers first (the allocator adds the claim
finalizer, as the scheduler does) and deleting pods with grace period 0 (no kubelet
confirms their termination). Namespaces are created on demand and kept: without the
namespace controller they would stay Terminating forever.
"""
from __future__ import annotations

from typing import Any, Iterable

POD_IMAGE = "registry.invalid/pause:harness"  # never pulled: there is no container runtime


class Objects:
    def __init__(self, client: Any):
        self.client = client  # lightkube sync Client
        self._created: list[tuple[type, str, str | None]] = []
        self._namespaces: set[str] = set()

    # -------------------------------------------------------------- generic

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Creates any object given as a dict (apiVersion/kind/metadata/...) and returns the
        stored object as a dict (with uid, resourceVersion, defaults)."""
        from lightkube import codecs

        ns = obj.get("metadata", {}).get("namespace")
        if ns:
            self.namespace(ns)
        res = codecs.from_dict(obj)
        created = self.client.create(res)
        self._created.append((type(res), created.metadata.name, ns))
        return created.to_dict()

    def get(self, kind: str, name: str, namespace: str | None = None, api_version: str = "resource.k8s.io/v1") -> dict:
        from lightkube import codecs

        res_type = type(codecs.from_dict({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}))
        return self.client.get(res_type, name, namespace=namespace).to_dict()

    def namespace(self, name: str) -> None:
        if name in self._namespaces or name == "default":
            return
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Namespace
        from lightkube.models.meta_v1 import ObjectMeta

        try:
            self.client.create(Namespace(metadata=ObjectMeta(name=name)))
        except ApiError as e:
            if e.status.code != 409:
                raise
        self._namespaces.add(name)

    # -------------------------------------------------------------- typed helpers

    def node(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A Node object (no kubelet heartbeats: it only has to exist, e.g. for the
        kubelet's ResourceSlice wiping and for nodeName-scoped slices)."""
        return self.create({"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}})

    def device_class(self, name: str, driver: str, cel: str | None = None,
                     config: list[dict] | None = None) -> dict[str, Any]:
        """A DeviceClass selecting ``device.driver == driver`` (and ``cel`` if given)."""
        selectors = [{"cel": {"expression": f'device.driver == "{driver}"'}}]
        if cel:
            selectors.append({"cel": {"expression": cel}})
        spec: dict[str, Any] = {"selectors": selectors}
        if config:
            spec["config"] = config
        return self.create({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                            "metadata": {"name": name}, "spec": spec})

    def resource_claim(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A ResourceClaim with ``spec`` as given (resource.k8s.io/v1 shape)."""
        return self.create({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                            "metadata": {"name": name, "namespace": namespace}, "spec": spec})

    def resource_slice(self, spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        name = name or f"{spec['nodeName'] if spec.get('nodeName') else 'cluster'}-{spec['driver']}-{spec['pool']['name']}"
        return self.create({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
                            "metadata": {"name": name.replace('/', '-')}, "spec": spec})

    def pod(self, namespace: str, name: str, claims: Iterable[str | dict] = (), node: str | None = None,
            containers: list[dict] | None = None) -> dict[str, Any]:
        """A Pod with ``spec.resourceClaims`` and ``spec.nodeName`` set.

        ``claims`` items are a ResourceClaim name (pod claim name = claim name) or a
        PodResourceClaim dict (``{"name": ..., "resourceClaimName": ...}``). Unless
        ``containers`` is given, one container ``ctr`` uses all claims
        (``resources.claims``): the kubelet prepares only claims a container uses."""
        pod_claims = [{"name": c, "resourceClaimName": c} if isinstance(c, str) else dict(c) for c in claims]
        if containers is None:
            containers = [{"name": "ctr", "image": POD_IMAGE,
                           "resources": {"claims": [{"name": c["name"]} for c in pod_claims]}}]
        spec: dict[str, Any] = {"containers": containers, "resourceClaims": pod_claims}
        if node:
            spec["nodeName"] = node
        return self.create({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": name, "namespace": namespace}, "spec": spec})

    # -------------------------------------------------------------- what drivers published

    def slices(self, driver: str, node: str) -> list[dict[str, Any]]:
        """The ResourceSlices of ``driver`` whose ``spec.nodeName`` is ``node``, as dicts."""
        from lightkube.resources.resource_v1 import ResourceSlice

        got = (s.to_dict() for s in self.client.list(ResourceSlice, fields={"spec.driver": driver}))
        return [s for s in got if s["spec"].get("nodeName") == node]

    def wait_slices(self, driver: str, node: str, timeout: float = 60, proc: Any = None) -> list[dict[str, Any]]:
        """Waits until ``driver`` has published every pool on ``node`` completely and returns those
        ResourceSlices. Call it before :meth:`Allocator.allocate`: a driver registers with the
        kubelet before (or while) it publishes; until then the allocator finds no device (and
        newer allocators skip an incomplete pool), where the scheduler would keep the pod pending
        and retry.
        ``proc`` (a DriverProcess) makes the wait fail at once, with its log, if it exits.
        Raises TimeoutError naming the driver and node."""
        from .processes import pools_complete, wait_for

        return wait_for(lambda: (lambda got: got if pools_complete(got) else None)(self.slices(driver, node)),
                        timeout, f"complete ResourceSlices of {driver} on node {node}", proc=proc)

    # -------------------------------------------------------------- teardown

    def cleanup(self) -> list[str]:
        """Deletes everything created, newest first. Returns errors instead of raising, so
        teardown never hides the test's own failure."""
        from lightkube import ApiError
        from lightkube.types import PatchType

        errors = []
        for res_type, name, ns in reversed(self._created):
            try:
                if res_type.__name__ == "ResourceClaim":
                    self.client.patch(res_type, name, {"metadata": {"finalizers": None}}, namespace=ns,
                                      patch_type=PatchType.MERGE)
                if res_type.__name__ == "Pod":
                    self.client.delete(res_type, name, namespace=ns, grace_period=0)
                else:
                    self.client.delete(res_type, name, namespace=ns)
            except ApiError as e:
                if e.status.code != 404:
                    errors.append(f"delete {res_type.__name__} {ns or ''}/{name}: {e}")
        self._created.clear()
        return errors

"""The chart against the real kube-apiserver (tests/harness): installed with the real Helm CLI,
then every built-in backend runs end to end under the chart's own identity (a node-bound
token of its ServiceAccount, never system:masters); every API call the daemon makes is read
from the apiserver's audit log and compared with the rendered RBAC; the node-isolation
ValidatingAdmissionPolicy refuses writes to another node's ResourceSlices."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from builtin_cases import CASES, BuiltinCase
from chart import (CHART, SA_PREFIX, VALUES_DIR, audit_calls, audit_lines, by_kind, chart_rules, helm, node_bound_token,
                   one, strip_chart_paths, token_kubeconfig, unbound_token, ungranted, whoami, write_values)
from dra_framework.testing import wait_for
from dra_framework.testing.conformance.support import host_copies, load_callable, select_target

pytestmark = pytest.mark.k8s

NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
MONITORING_CRDS = [("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")]


class Release:
    """One `helm install` into the harness apiserver (release record in "default")."""

    def __init__(self, cp: Any, name: str, values: dict[str, Any] | Path, workdir: Path, namespace: str = "default"):
        self.cp, self.name, self.namespace = cp, name, namespace
        vf = values if isinstance(values, Path) else write_values(workdir / f"{name}-values.yaml", values)
        helm("install", name, str(CHART), "--namespace", namespace, "-f", str(vf), kubeconfig=cp.kubeconfig)
        manifest = helm("get", "manifest", name, "--namespace", namespace, kubeconfig=cp.kubeconfig).stdout
        self.objects: list[dict[str, Any]] = [o for o in yaml.safe_load_all(manifest) if o]
        sa = one(self.objects, "ServiceAccount")["metadata"]
        self.sa, self.sa_namespace = sa["name"], sa["namespace"]
        self.username = f"{SA_PREFIX}{self.sa_namespace}:{self.sa}"
        self.rules = chart_rules(self.objects, self.sa, self.sa_namespace)

    def uninstall(self) -> None:
        helm("uninstall", self.name, "--namespace", self.namespace, kubeconfig=self.cp.kubeconfig, check=False)


@contextlib.contextmanager
def release(cp: Any, name: str, values: dict[str, Any] | Path, workdir: Path, namespace: str = "default"):
    r = Release(cp, name, values, workdir, namespace)
    try:
        yield r
    finally:
        r.uninstall()


def identity_pod(k8s_objects: Any, rel: Release, node: str) -> dict[str, Any]:
    """The pod a DaemonSet would run on ``node`` (no kubelet runs it): its token is node-bound."""
    return k8s_objects.create({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": f"{rel.name}-{node}", "namespace": rel.sa_namespace},
                               "spec": {"serviceAccountName": rel.sa, "nodeName": node,
                                        "containers": [{"name": "driver", "image": "dra-framework"}]}})


def chart_kubeconfig(cp: Any, k8s_objects: Any, rel: Release, node: str, path: Path) -> Path:
    """A kubeconfig with a token of the chart's ServiceAccount bound to a pod on ``node``;
    checked with SelfSubjectReview to be that ServiceAccount, node-bound, not system:masters."""
    pod = identity_pod(k8s_objects, rel, node)
    kc = token_kubeconfig(cp.kubeconfig, node_bound_token(k8s_objects.client, rel.sa_namespace, rel.sa, pod), path)
    me = whoami(kc)
    assert me["username"] == rel.username, me
    assert "system:masters" not in me["groups"], me
    assert me["extra"].get(NODE_NAME_KEY) == [node], me
    return kc


def values_for(drivers: list[dict[str, Any]], ns: str, **extra: Any) -> dict[str, Any]:
    return {"namespace": {"create": True, "name": ns},
            "nodeGroups": [{"name": "e2e", "drivers": strip_chart_paths(drivers)}], **extra}


def device_names(client: Any, driver: str, node: str) -> list[str]:
    from lightkube.resources.resource_v1 import ResourceSlice

    return [d["name"] for s in client.list(ResourceSlice, fields={"spec.driver": driver})
            if s.spec.nodeName == node for d in (s.to_dict()["spec"].get("devices") or [])]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_builtin_backend_end_to_end_under_chart_identity(case: BuiltinCase, helm_bin, kube_apiserver, k8s_objects,
                                                         kubelet_shim, allocator, cdi_check, dra_driver, tmp_path):
    idx = CASES.index(case)
    node, ns = f"chart-node-{idx}", f"dra-e2e-{idx}"
    target = select_target(str(case.config), case.backend)
    driver = target.driver
    shim = kubelet_shim(node)
    with release(kube_apiserver, f"e2e-{idx}", values_for([target.config["drivers"][target.index]], ns),
                 tmp_path) as rel, contextlib.ExitStack() as held:
        classes = {o["metadata"]["name"]: o for o in by_kind(rel.objects, "DeviceClass")}
        assert case.device_class in classes, f"the chart has no DeviceClass {case.device_class}: {sorted(classes)}"
        kc = chart_kubeconfig(kube_apiserver, k8s_objects, rel, node, tmp_path / "chart.kubeconfig")
        # The daemon runs the case's driver config; the chart's ConfigMap carries the same
        # drivers, with hostRoot/driverRoot/hostDriverRoot from the chart's paths instead.
        rendered = yaml.safe_load(one(rel.objects, "ConfigMap")["data"]["config.yaml"])
        assert strip_chart_paths(rendered["drivers"]) == strip_chart_paths([target.config["drivers"][target.index]])

        cfg = target.driver_config(host_copies=tmp_path / "hosts")
        host = load_callable("host", case.host)
        if host is not None:
            for root in host_copies(cfg, tmp_path / "hosts"):
                held.enter_context(host(root))
        # --kubeconfig overrides the harness's admin kubeconfig of the config file; --uninstall
        # makes the stop delete the node's slices (the delete path runs under the identity too).
        mark = audit_lines(kube_apiserver.audit_log)  # the daemon's calls only, not the test's
        daemon = dra_driver(cfg, shim, args=("--kubeconfig", str(kc), "--uninstall"))
        shim.wait_registered(driver, timeout=90)
        # Ready = every slice published, under the chart's identity.
        wait_for(lambda: daemon.probe("/readyz")[0] == 200, 120, f"{driver} /readyz 200")
        assert device_names(k8s_objects.client, driver, node)

        request: dict[str, Any] = {"deviceClassName": case.device_class, "count": case.count}
        if case.selectors:
            request["selectors"] = [{"cel": {"expression": e}} for e in case.selectors]
        k8s_objects.resource_claim("chart-e2e", "claim", {"devices": {"requests": [{"name": "req", "exactly": request}]}})
        k8s_objects.pod("chart-e2e", "workload", claims=["claim"], node=node)
        allocator.allocate("chart-e2e", "claim", node, pod=("chart-e2e", "workload"))
        prepared = shim.prepare_pod("chart-e2e", "workload")
        ids = prepared["claim"]
        assert ids, f"no CDI devices for the claim: {prepared.raw}"
        # What the runtime would inject (the CDI reference library), plus the spec files for
        # edits the tool does not print (netDevices).
        edits = json.dumps(cdi_check(daemon.cdi_dir, ids)) + "".join(p.read_text() for p in daemon.cdi_specs())
        for want in case.expect_in_edits:
            assert want in edits, f"{want} missing in the CDI edits {edits}"
        assert daemon.probe("/readyz")[0] == 200, daemon.probe("/readyz")  # no refused request
        shim.unprepare_pod("chart-e2e", "workload")
        assert not daemon.checkpoint(), daemon.checkpoint()
        assert daemon.stop() == 0, daemon.logs()
        assert not device_names(k8s_objects.client, driver, node), "--uninstall left slices behind"

        calls = audit_calls(kube_apiserver.audit_log, rel.username, after=mark)
        made = {(c.verb, c.resource) for c in calls}
        print(f"{len(calls)} API calls of {rel.username}:", *sorted(f"{v} {r}" for v, r in made if r), sep="\n  ")
        bad = ungranted(calls, rel.rules)
        assert not bad, "calls the chart does not grant (or that were refused):\n  " + "\n  ".join(map(str, bad))
        for want in [("get", "resourceclaims"), ("get", "nodes"), ("list", "resourceslices"),
                     ("watch", "resourceslices"), ("create", "resourceslices"), ("delete", "resourceslices")]:
            assert want in made, f"the e2e run never made {want}: {sorted(made)}"


def first_case_driver() -> tuple[BuiltinCase, Any]:
    case = CASES[0]
    return case, select_target(str(case.config), case.backend)


def test_status_write_refused_without_the_driver_subresource_rule(helm_bin, kube_apiserver, k8s_objects, kubelet_shim,
                                                                  allocator, dra_driver, k8s_version, tmp_path):
    """The negative control of the verb-coverage check: the ClusterRole without
    resourceclaims/driver (what the static manifest before the chart granted) on a server that authorizes
    status.devices per driver: the prepare fails, the audit log shows the refused PATCH and
    ``ungranted`` reports it."""
    if tuple(int(x) for x in k8s_version.split(".")[:2]) < (1, 36):
        pytest.skip(f"Kubernetes {k8s_version} has no per-driver status authorization (1.36+)")
    from dra_framework.testing import ShimError

    case, target = first_case_driver()
    node = "chart-node-neg"
    shim = kubelet_shim(node)
    values = values_for([target.config["drivers"][target.index]], "dra-neg",
                        rbac={"granularStatusAuthorization": False})
    with release(kube_apiserver, "neg", values, tmp_path) as rel:
        assert not any("resourceclaims/driver" in r.get("resources", []) for _, r in rel.rules)
        kc = chart_kubeconfig(kube_apiserver, k8s_objects, rel, node, tmp_path / "chart.kubeconfig")
        mark = audit_lines(kube_apiserver.audit_log)
        daemon = dra_driver(target.driver_config(host_copies=tmp_path / "hosts"), shim, args=("--kubeconfig", str(kc)))
        shim.wait_registered(target.driver, timeout=90)
        wait_for(lambda: daemon.probe("/readyz")[0] == 200, 120, "/readyz 200")
        request = {"deviceClassName": case.device_class,
                   "selectors": [{"cel": {"expression": e}} for e in case.selectors]}
        k8s_objects.resource_claim("chart-neg", "claim", {"devices": {"requests": [{"name": "req", "exactly": request}]}})
        k8s_objects.pod("chart-neg", "workload", claims=["claim"], node=node)
        allocator.allocate("chart-neg", "claim", node, pod=("chart-neg", "workload"))
        with pytest.raises(ShimError, match="resourceclaims/driver"):
            shim.prepare_pod("chart-neg", "workload")
        bad = ungranted(audit_calls(kube_apiserver.audit_log, rel.username, after=mark), rel.rules)
        print("refused:", *bad, sep="\n  ")
        assert bad and all((c.verb, c.resource, c.refused) == ("patch", "resourceclaims/status", True)
                           for c in bad), bad
        assert "resourceclaims/driver" in bad[0].message


def test_node_isolation_policy_refuses_other_nodes_slices(helm_bin, kube_apiserver, k8s_objects, tmp_path):
    """With a token of the chart's ServiceAccount bound to a pod on node-a, RBAC allows slice
    writes, and the ValidatingAdmissionPolicy lets through only node-a's: creating, updating or
    deleting node-b's slice is refused, as is any slice write with a token bound to no node."""
    from lightkube import ApiError, Client, KubeConfig, codecs
    from lightkube.resources.resource_v1 import ResourceSlice

    a, b = "iso-node-a", "iso-node-b"
    k8s_objects.node(a)
    k8s_objects.node(b)
    _, target = first_case_driver()
    driver = target.driver

    def slice_(name: str, node: str) -> dict[str, Any]:
        return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": name},
                "spec": {"driver": driver, "nodeName": node, "pool": {"name": node, "generation": 1,
                                                                       "resourceSliceCount": 1},
                         "devices": [{"name": "dev-0"}]}}

    with release(kube_apiserver, "iso", values_for([target.config["drivers"][target.index]], "dra-iso"),
                 tmp_path) as rel:
        policy = one(rel.objects, "ValidatingAdmissionPolicy")["metadata"]["name"]
        kc = chart_kubeconfig(kube_apiserver, k8s_objects, rel, a, tmp_path / "chart.kubeconfig")
        client = Client(config=KubeConfig.from_file(str(kc)))
        admin_b = k8s_objects.create(slice_("iso-b-by-admin", b))

        def refused(fn, *args, **kw) -> str:
            with pytest.raises(ApiError) as exc:
                fn(*args, **kw)
            assert exc.value.status.code in (403, 422), exc.value.status
            msg = exc.value.status.message
            assert policy in msg, f"refused, but not by {policy}: {msg}"
            return msg

        try:
            # The policy takes effect asynchronously after its creation: wait until it refuses.
            msg = wait_for(lambda: _refusal(client, codecs.from_dict(slice_("iso-b-by-a", b)), policy), 30,
                           "the node-isolation policy to refuse a cross-node create")
            print(f"create of node {b}'s slice with node {a}'s token: {msg}")
            assert f"spec.nodeName {b} is not {a}" in msg
            own = client.create(codecs.from_dict(slice_("iso-a-by-a", a)))      # its own node: allowed
            own.spec.devices[0].name = "dev-1"
            client.replace(own)
            client.delete(ResourceSlice, "iso-a-by-a")
            other = client.get(ResourceSlice, admin_b["metadata"]["name"])    # reading is not restricted
            other.spec.devices[0].name = "dev-1"
            print("update:", refused(client.replace, other))
            print("delete:", refused(client.delete, ResourceSlice, admin_b["metadata"]["name"]))
        finally:
            client.close()

        unbound = Client(config=KubeConfig.from_file(str(token_kubeconfig(
            kube_apiserver.kubeconfig, unbound_token(k8s_objects.client, rel.sa_namespace, rel.sa),
            tmp_path / "unbound.kubeconfig"))))
        try:
            msg = refused(unbound.create, codecs.from_dict(slice_("iso-a-unbound", a)))
            assert "node-bound token" in msg, msg
        finally:
            unbound.close()


def _refusal(client: Any, obj: Any, policy: str) -> str | None:
    from lightkube import ApiError
    from lightkube.resources.resource_v1 import ResourceSlice

    try:
        client.create(obj)
    except ApiError as exc:
        return exc.status.message if policy in (exc.status.message or "") else None
    client.delete(ResourceSlice, obj.metadata.name)  # created: the policy is not active yet
    return None


def _monitoring_crds(client: Any) -> None:
    """Minimal stand-ins of the Prometheus operator's CRDs, so that ServiceMonitor and
    PrometheusRule objects of the chart can be created (their schemas are not checked here)."""
    from lightkube import ApiError, codecs

    for plural, kind in MONITORING_CRDS:
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": f"{plural}.monitoring.coreos.com"},
               "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                        "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
        try:
            client.create(codecs.from_dict(crd))
        except ApiError as exc:
            if exc.status.code != 409:
                raise


@pytest.mark.parametrize("values", ["default", "multi-group", "existing-namespace"])
def test_every_rendered_object_is_accepted_by_the_apiserver(values, helm_bin, kube_apiserver, k8s_objects, tmp_path):
    """`helm install` of the default values and two non-trivial values files creates every
    object on the real apiserver (API validation, admission, CEL compilation of the policy and
    the DeviceClasses); each one is then read back."""
    from lightkube import codecs
    from lightkube.resources.core_v1 import Namespace

    client = k8s_objects.client
    _monitoring_crds(client)
    vf = tmp_path / "empty.yaml" if values == "default" else VALUES_DIR / f"{values}.yaml"
    if values == "default":
        vf.write_text("{}\n")
    namespace = "default"
    if values == "existing-namespace":
        namespace = "accel-dra"
        k8s_objects.namespace(namespace)
    wait_for(lambda: _monitoring_served(client), 30, "monitoring.coreos.com served")
    with release(kube_apiserver, f"apply-{values}", vf, tmp_path, namespace=namespace) as rel:
        assert rel.objects
        for obj in rel.objects:
            res = type(codecs.from_dict(obj)) if obj["apiVersion"] != "monitoring.coreos.com/v1" else None
            if res is None:
                continue  # generic resources: created by helm above, not modelled by lightkube
            md = obj["metadata"]
            got = client.get(res, md["name"], namespace=md.get("namespace"))
            assert got.metadata.name == md["name"]
        kinds = sorted({o["kind"] for o in rel.objects})
        print(f"{values}: {len(rel.objects)} objects: {', '.join(kinds)}")
        # An upgrade that changes the config rolls the DaemonSets (checksum in the pod template).
        from lightkube.resources.apps_v1 import DaemonSet

        def checksums() -> dict[str, str]:
            return {d["metadata"]["name"]: client.get(DaemonSet, d["metadata"]["name"], namespace=d["metadata"]["namespace"])
                    .spec.template.metadata.annotations["checksum/config"] for d in by_kind(rel.objects, "DaemonSet")}

        before = checksums()
        helm("upgrade", rel.name, str(CHART), "--namespace", namespace, "-f", str(vf), "--set", "settings.apiQPS=7",
             kubeconfig=kube_apiserver.kubeconfig)
        after = checksums()
        assert before.keys() == after.keys() and all(before[k] != after[k] for k in before), (before, after)
    if values == "default":
        assert client.get(Namespace, "dra-framework")


def _monitoring_served(client: Any) -> bool:
    from lightkube.generic_resource import create_namespaced_resource

    try:
        for plural, kind in MONITORING_CRDS:
            client.list(create_namespaced_resource("monitoring.coreos.com", "v1", kind, plural))
        return True
    except Exception:  # noqa: BLE001 - not established yet
        return False

"""Helpers of the chart tests: the Helm CLI, rendering, node-bound ServiceAccount tokens and the
kube-apiserver audit log compared with the chart's RBAC rules."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "dra-framework"
VALUES_DIR = Path(__file__).resolve().parent / "values"
HELM_VERSION = os.environ.get("DRA_HARNESS_HELM_VERSION", "v3.22.0")
#: The user name prefix of ServiceAccounts in the audit log and in userInfo.
SA_PREFIX = "system:serviceaccount:"

#: Audit policy of the test apiserver: every request of a ServiceAccount, metadata only.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}, {"level": "None"}],
}


def helm_path() -> Path:
    from dra_framework.testing.k8s import cache_root

    return cache_root() / f"helm-{HELM_VERSION}" / "bin" / "helm"


def helm(*args: str, kubeconfig: str | os.PathLike[str] | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm_path()), *args]
    if kubeconfig:
        cmd += ["--kubeconfig", str(kubeconfig)]
    # A private Helm home: no repositories or plugins of the machine's user.
    home = Path(os.environ.get("TMPDIR", "/tmp")) / "dra-helm-home"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def write_values(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def render(release: str = "dra", values: Iterable[str | os.PathLike[str]] = (), kube_version: str = "1.37.2",
           sets: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``helm template`` → the list of rendered objects."""
    args = ["template", release, str(CHART), "--kube-version", kube_version]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return [o for o in yaml.safe_load_all(helm(*args).stdout) if o]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def strip_chart_paths(drivers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A config's drivers as chart values: without the options the chart sets from ``paths``."""
    out = json.loads(json.dumps(drivers))
    for d in out:
        for b in d.get("backends") or []:
            for k in ("hostRoot", "driverRoot", "hostDriverRoot"):
                (b.get("options") or {}).pop(k, None)
    return out


# --------------------------------------------------------------------- identity


def node_bound_token(client: Any, namespace: str, service_account: str, pod: dict[str, Any],
                     seconds: int = 3600) -> str:
    """TokenRequest for ``service_account`` bound to ``pod`` (which runs on a node), as the kubelet
    asks for a projected token: the token carries the pod's node (authentication.kubernetes.io/node-name)."""
    from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
    from lightkube.resources.core_v1 import ServiceAccountToken

    from lightkube.models.meta_v1 import ObjectMeta

    req = ServiceAccountToken(metadata=ObjectMeta(), spec=TokenRequestSpec(
        audiences=[], expirationSeconds=seconds,
        boundObjectRef=BoundObjectReference(kind="Pod", apiVersion="v1", name=pod["metadata"]["name"],
                                            uid=pod["metadata"]["uid"])))
    return client.create(req, service_account, namespace=namespace).status.token


def unbound_token(client: Any, namespace: str, service_account: str, seconds: int = 3600) -> str:
    from lightkube.models.authentication_v1 import TokenRequestSpec
    from lightkube.resources.core_v1 import ServiceAccountToken

    from lightkube.models.meta_v1 import ObjectMeta

    req = ServiceAccountToken(metadata=ObjectMeta(), spec=TokenRequestSpec(audiences=[], expirationSeconds=seconds))
    return client.create(req, service_account, namespace=namespace).status.token


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """The admin kubeconfig's cluster (URL, CA) with ``token`` as the only credential."""
    cfg = json.loads(Path(admin_kubeconfig).read_text())
    cfg["users"] = [{"name": "sa", "user": {"token": token}}]
    cfg["contexts"] = [{"name": "harness", "context": {"cluster": "harness", "user": "sa"}}]
    path.write_text(json.dumps(cfg, indent=2))
    os.chmod(path, 0o600)
    return path


def whoami(kubeconfig: Path) -> dict[str, Any]:
    """SelfSubjectReview with ``kubeconfig``: ``{"username", "groups", "extra"}``."""
    from lightkube import Client, KubeConfig
    from lightkube.resources.authentication_v1 import SelfSubjectReview

    c = Client(config=KubeConfig.from_file(str(kubeconfig)))
    try:
        info = c.create(SelfSubjectReview()).status.userInfo
        return {"username": info.username, "groups": info.groups, "extra": info.extra or {}}
    finally:
        c.close()


# --------------------------------------------------------------------- audit log vs. RBAC


@dataclass(frozen=True)
class Call:
    """One API request of the audit log, as RBAC sees it."""
    verb: str
    api_group: str
    resource: str          # "resourceclaims/status" for a subresource; "" for a non-resource URL
    namespace: str
    name: str
    code: int
    uri: str
    message: str = ""

    @property
    def refused(self) -> bool:
        """403, or 422 with a Forbidden field error: how a status write whose per-driver
        authorization failed is answered (the check runs in the status strategy's validation)."""
        return self.code == 403 or (self.code == 422 and "forbidden" in self.message.lower())

    def __str__(self) -> str:
        what = self.resource and f"{self.api_group or 'core'}/{self.resource}"
        return f"{self.verb} {what or self.uri} (ns {self.namespace or '-'}, name {self.name or '-'}) -> {self.code}"


def audit_lines(log_path: Path) -> int:
    """Lines in the audit log so far (``audit_calls(..., after=)`` skips them)."""
    return len(log_path.read_text().splitlines()) if log_path.exists() else 0


def audit_calls(log_path: Path, username: str, after: int = 0) -> list[Call]:
    """The requests ``username`` made (after the first ``after`` lines of the log), one per
    audit ID (the ResponseComplete or, for watches, the ResponseStarted event)."""
    seen: dict[str, Call] = {}
    if not log_path.exists():
        return []
    for line in log_path.read_text().splitlines()[after:]:
        ev = json.loads(line)
        if ev.get("user", {}).get("username") != username:
            continue
        ref = ev.get("objectRef") or {}
        res = ref.get("resource", "")
        if ref.get("subresource"):
            res += "/" + ref["subresource"]
        seen[ev["auditID"]] = Call(ev["verb"], ref.get("apiGroup", ""), res, ref.get("namespace", ""),
                                   ref.get("name", ""), (ev.get("responseStatus") or {}).get("code", 0),
                                   ev.get("requestURI", ""), (ev.get("responseStatus") or {}).get("message", ""))
    return list(seen.values())


#: Discovery and version requests every authenticated user may make (the bootstrap
#: ClusterRoles system:discovery / system:public-info-viewer), not the chart's business.
PUBLIC_URL_PREFIXES = ("/api", "/apis", "/version", "/openapi", "/healthz", "/readyz", "/livez")


def granted(call: Call, rules: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether one of ``rules`` ((namespace or "" for cluster-wide, PolicyRule)) allows ``call``."""
    if not call.resource:
        return call.uri.split("?")[0].startswith(PUBLIC_URL_PREFIXES)
    for ns, rule in rules:
        if ns and ns != call.namespace:
            continue
        if not ({"*", call.api_group} & set(rule.get("apiGroups", []))):
            continue
        if not ({"*", call.resource} & set(rule.get("resources", []))):
            continue
        if not ({"*", call.verb} & set(rule.get("verbs", []))):
            continue
        if rule.get("resourceNames") and call.name not in rule["resourceNames"]:
            continue
        return True
    return False


def chart_rules(objs: list[dict[str, Any]], service_account: str, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """The PolicyRules the rendered chart grants ``namespace/service_account``:
    ClusterRoles through ClusterRoleBindings, Roles through RoleBindings."""
    def bound(b: dict[str, Any]) -> bool:
        return any(s.get("kind") == "ServiceAccount" and s.get("name") == service_account
                   and s.get("namespace") == namespace for s in b.get("subjects") or [])

    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("ClusterRole", "Role")}
    out: list[tuple[str, dict[str, Any]]] = []
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding") or not bound(b):
            continue
        ns = b["metadata"].get("namespace", "") if b["kind"] == "RoleBinding" else ""
        ref = b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"]))
        assert role is not None, f"{b['kind']} {b['metadata']['name']} refers to {ref} which the chart lacks"
        out += [(ns, r) for r in role.get("rules") or []]
    return out


def ungranted(calls: list[Call], rules: list[tuple[str, dict[str, Any]]]) -> list[Call]:
    """Calls no rule allows, and calls the server refused (:attr:`Call.refused`)."""
    return [c for c in calls if c.refused or not granted(c, rules)]


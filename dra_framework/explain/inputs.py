"""Reading what ``explain`` works on: files (multi-document YAML, JSON, ``kind: List``, as
``discover -o yaml`` writes them) and, with a kubeconfig, the cluster.

Objects: ResourceClaim, ResourceClaimTemplate, Pod (what to explain), DeviceClass, ResourceSlice,
Node (labels for node selectors) and allocated ResourceClaims (devices in use). Claims get the
apiserver's defaults (``allocationMode: ExactCount``, ``count: 1``, toleration ``operator: Equal``).
Fields are checked strictly (an unknown field is an error, like ``kubectl --validate=strict``;
see strict.py), names as the apiserver checks them. Bad input raises :class:`InputError` naming
the file, document, object and field.
"""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import DraFrameworkError
from .strict import name_errors, unknown_fields

RESOURCE_API = "resource.k8s.io/v1"
_KINDS = {"ResourceClaim", "ResourceClaimTemplate", "Pod", "DeviceClass", "ResourceSlice", "Node"}
_NAMESPACED = {"ResourceClaim", "ResourceClaimTemplate", "Pod"}


class InputError(DraFrameworkError):
    """Input ``explain`` cannot use (exit status 2)."""


@dataclass
class Target:
    """One claim to explain: from a file or the cluster, from a template, or a pod's claim."""

    claim: dict[str, Any]
    source: str
    pod: dict[str, Any] | None = None


@dataclass
class Inputs:
    claims: list[dict[str, Any]] = field(default_factory=list)      # every ResourceClaim
    templates: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    explicit: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, ns, name) asked for

    def add(self, obj: dict[str, Any], where: str) -> None:
        kind, api = obj.get("kind"), obj.get("apiVersion")
        if kind not in _KINDS:
            raise InputError(f"{where}: kind {kind!r} is not one of {', '.join(sorted(_KINDS))}")
        if kind in ("ResourceClaim", "ResourceClaimTemplate", "DeviceClass", "ResourceSlice") and api != RESOURCE_API:
            raise InputError(f"{where}: {kind} apiVersion {api!r}: explain reads {RESOURCE_API} objects "
                             f"(convert with `kubectl get -o yaml` from a 1.34+ cluster)")
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not (meta.get("name") or (kind == "ResourceSlice" and meta.get("generateName"))):
            raise InputError(f"{where}: {kind}: metadata.name is missing")
        if kind in _NAMESPACED and not meta.get("namespace"):
            meta["namespace"] = "default"  # as kubectl does for a file without one
        ref = f"{kind} {_ref(obj) if kind in _NAMESPACED else meta.get('name') or meta.get('generateName')}"
        problems = [f"{p}: unknown field" for p in unknown_fields(obj)] + name_errors(obj)
        if problems:
            raise InputError(f"{where}: {ref}: {'; '.join(problems)}")
        spec = obj.get("spec")
        if kind != "Node" and not isinstance(spec, dict):
            raise InputError(f"{where}: {kind} {meta.get('name')}: spec is missing or not a mapping")
        if kind == "ResourceClaim":
            _default_claim_spec(obj["spec"], f"{where}: ResourceClaim {meta['name']}")
            self._replace(self.claims, obj)
        elif kind == "ResourceClaimTemplate":
            _default_claim_spec((obj["spec"].get("spec") or {}), f"{where}: ResourceClaimTemplate {meta['name']}")
            self._replace(self.templates, obj)
        elif kind == "Pod":
            self._replace(self.pods, obj)
        elif kind == "DeviceClass":
            self.classes[meta["name"]] = obj
        elif kind == "ResourceSlice":
            self.slices.append(obj)
        else:
            self.nodes[meta["name"]] = obj

    @staticmethod
    def _replace(lst: list[dict[str, Any]], obj: dict[str, Any]) -> None:
        key = _key(obj)
        lst[:] = [o for o in lst if _key(o) != key] + [obj]

    def targets(self) -> list[Target]:
        """Unallocated claims, templates (as the claim they stamp out) and pods' claims; objects
        named on the command line even when allocated."""
        out: list[Target] = []
        wanted = set(self.explicit)
        # a pod's claims are explained with the pod (allocated together), not again on their own
        by_pod = {(_key(p)[0], pc.get("resourceClaimName")) for p in self.pods
                  for pc in (p.get("spec") or {}).get("resourceClaims") or [] if pc.get("resourceClaimName")}
        for c in self.claims:
            if ((c.get("status") or {}).get("allocation") is None and not self.explicit and _key(c) not in by_pod) or \
                    ("ResourceClaim",) + _key(c) in wanted:
                out.append(Target(c, f"ResourceClaim {_ref(c)}"))
        used = {(_key(p)[0], pc.get("resourceClaimTemplateName")) for p in self.pods
                for pc in (p.get("spec") or {}).get("resourceClaims") or []}
        for t in self.templates:
            if (not self.explicit and _key(t) not in used) or ("ResourceClaimTemplate",) + _key(t) in wanted:
                out.append(Target(_from_template(t, _key(t)[1]), f"ResourceClaimTemplate {_ref(t)}"))
        for p in self.pods:
            if not self.explicit or ("Pod",) + _key(p) in wanted:
                out.extend(self._pod_claims(p))
        return out

    def _pod_claims(self, pod: dict[str, Any]) -> list[Target]:
        ns, name = _key(pod)
        out = []
        for i, pc in enumerate((pod.get("spec") or {}).get("resourceClaims") or []):
            where = f"Pod {ns}/{name}: spec.resourceClaims[{i}]"
            if pc.get("resourceClaimName"):
                claim = next((c for c in self.claims if _key(c) == (ns, pc["resourceClaimName"])), None)
                if claim is None:
                    raise InputError(f"{where}.resourceClaimName: ResourceClaim {ns}/{pc['resourceClaimName']} not found")
                out.append(Target(claim, f"{where} (ResourceClaim {ns}/{pc['resourceClaimName']})", pod))
            elif pc.get("resourceClaimTemplateName") and (generated := next(
                    (st.get("resourceClaimName") for st in (pod.get("status") or {}).get("resourceClaimStatuses") or []
                     if st.get("name") == pc.get("name") and st.get("resourceClaimName")), None)) and any(
                    _key(c) == (ns, generated) for c in self.claims):
                claim = next(c for c in self.claims if _key(c) == (ns, generated))
                out.append(Target(claim, f"{where} (ResourceClaim {ns}/{generated} from its template)", pod))
            elif pc.get("resourceClaimTemplateName"):
                t = next((t for t in self.templates if _key(t) == (ns, pc["resourceClaimTemplateName"])), None)
                if t is None:
                    raise InputError(f"{where}.resourceClaimTemplateName: ResourceClaimTemplate "
                                     f"{ns}/{pc['resourceClaimTemplateName']} not found")
                claim = _from_template(t, f"{name}-{pc.get('name', '')}")
                out.append(Target(claim, f"{where} (from ResourceClaimTemplate {_ref(t)})", pod))
            else:
                raise InputError(f"{where}: neither resourceClaimName nor resourceClaimTemplateName is set")
        if not out:
            raise InputError(f"Pod {ns}/{name}: spec.resourceClaims is empty, nothing to explain")
        return out


def _key(o: dict[str, Any]) -> tuple[str, str]:
    meta = o.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name", ""))


def _ref(o: dict[str, Any]) -> str:
    return "/".join(_key(o))


def _from_template(t: dict[str, Any], name: str) -> dict[str, Any]:
    ns = _key(t)[0]
    return {"apiVersion": RESOURCE_API, "kind": "ResourceClaim",
            "metadata": {"namespace": ns, "name": name},
            "spec": copy.deepcopy((t.get("spec") or {}).get("spec") or {})}


def _default_claim_spec(spec: dict[str, Any], where: str) -> None:
    """The apiserver's defaults for a claim spec (pkg/apis/resource/v1 defaults.go)."""
    devices = spec.get("devices") or {}
    if not isinstance(devices, dict):
        raise InputError(f"{where}: spec.devices is not a mapping")
    for i, r in enumerate(devices.get("requests") or []):
        if not isinstance(r, dict) or not r.get("name"):
            raise InputError(f"{where}: spec.devices.requests[{i}].name is missing")
        if ("exactly" in r) == bool(r.get("firstAvailable")):
            raise InputError(f"{where}: spec.devices.requests[{i}] ({r['name']}): exactly one of exactly and "
                             "firstAvailable must be set")
        for j, one in enumerate([r["exactly"]] if "exactly" in r else r["firstAvailable"]):
            path = f"spec.devices.requests[{i}]." + ("exactly" if "exactly" in r else f"firstAvailable[{j}]")
            if not isinstance(one, dict):
                raise InputError(f"{where}: {path} is not a mapping")
            one.setdefault("allocationMode", "ExactCount")
            if one["allocationMode"] == "ExactCount" and not one.get("count"):
                one["count"] = 1
            if not isinstance(one.get("count", 1), int) or one.get("count", 1) < 0:
                raise InputError(f"{where}: {path}.count: must be a positive integer, got {one.get('count')!r}")
            for t in one.get("tolerations") or []:
                t.setdefault("operator", "Equal")


def read_file(path: str, into: Inputs) -> None:
    """Adds every object of ``path`` (``-``: stdin) to ``into``. Raises InputError."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    try:
        docs = [json.loads(text)] if text.lstrip().startswith(("{", "[")) else list(yaml.safe_load_all(text))
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not YAML or JSON: {' '.join(str(exc).split())}") from exc
    n = 0
    for i, doc in enumerate(docs):
        for j, obj in enumerate(_flatten(doc)):
            where = f"{path}: document {i + 1}" + (f" item {j}" if isinstance(doc, (list, dict)) and
                                                    (isinstance(doc, list) or str(doc.get("kind", "")).endswith("List")) else "")
            if not isinstance(obj, dict):
                raise InputError(f"{where}: not a Kubernetes object")
            into.add(obj, where)
            n += 1
    if n == 0:
        raise InputError(f"{path}: no objects")


def _flatten(doc: Any) -> list[Any]:
    if doc is None:
        return []
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
        return list(doc.get("items") or [])
    return [doc]

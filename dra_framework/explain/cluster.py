"""Reading DeviceClasses, ResourceSlices, ResourceClaims, Nodes and named objects from a cluster."""
from __future__ import annotations

from typing import Any

from .inputs import RESOURCE_API, InputError, Inputs

_LISTS = (("DeviceClass", RESOURCE_API, "apis/resource.k8s.io/v1/deviceclasses"),
          ("ResourceSlice", RESOURCE_API, "apis/resource.k8s.io/v1/resourceslices"),
          ("ResourceClaim", RESOURCE_API, "apis/resource.k8s.io/v1/resourceclaims"),
          ("ResourceClaimTemplate", RESOURCE_API, "apis/resource.k8s.io/v1/resourceclaimtemplates"),
          ("Node", "v1", "api/v1/nodes"))
_NAMED = {"resourceclaim": ("ResourceClaim", RESOURCE_API, "apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}"),
          "resourceclaimtemplate": ("ResourceClaimTemplate", RESOURCE_API,
                                    "apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates/{name}"),
          "pod": ("Pod", "v1", "api/v1/namespaces/{ns}/pods/{name}")}
_ALIASES = {"claim": "resourceclaim", "resourceclaims": "resourceclaim", "template": "resourceclaimtemplate",
            "resourceclaimtemplates": "resourceclaimtemplate", "pods": "pod", "po": "pod"}


def parse_name(text: str, namespace: str) -> tuple[str, str, str]:
    """``pod/NAME``, ``resourceclaim/NAME``, ``resourceclaimtemplate/NAME`` (``NS/`` prefix allowed
    on NAME) → (kind key, ns, name). Raises InputError."""
    kind, sep, rest = text.partition("/")
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if not sep or kind not in _NAMED or not rest:
        raise InputError(f"{text!r}: expected pod/NAME, resourceclaim/NAME or resourceclaimtemplate/NAME")
    ns, sep, name = rest.rpartition("/")
    return kind, (ns if sep else namespace), name


def load(kubeconfig: str, names: list[str], namespace: str, into: Inputs) -> None:
    """Adds the cluster's objects to ``into`` (objects from files, read before, are kept)."""
    from lightkube import Client, KubeConfig
    from lightkube.core.exceptions import ApiError, ConfigError

    try:
        client = Client(KubeConfig.from_file(kubeconfig), field_manager="dra-framework-explain")
    except (ConfigError, OSError, ValueError, KeyError) as exc:
        raise InputError(f"kubeconfig {kubeconfig}: {' '.join(str(exc).split())}") from None
    http = client._client._client  # the authenticated httpx client with the server's base URL

    def get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = http.get(path, params=params or {}, headers={"Accept": "application/json"})
        try:
            client._client.raise_for_status(resp)
        except ApiError as exc:
            raise InputError(f"GET {path}: {exc.status.message or exc}") from None
        return resp.json()

    have = {(o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
            for o in into.claims + into.templates + into.slices + list(into.classes.values()) + list(into.nodes.values())}
    for kind, api, path in _LISTS:
        cont = None
        while True:
            data = get(path, {"limit": 500, **({"continue": cont} if cont else {})})
            for item in data.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api)
                meta = item.get("metadata") or {}
                if (kind, meta.get("namespace"), meta.get("name")) not in have:
                    into.add(item, f"cluster: {kind} {meta.get('name')}")
            cont = (data.get("metadata") or {}).get("continue")
            if not cont:
                break
    for text in names:
        key, ns, name = parse_name(text, namespace)
        kind, api, path = _NAMED[key]
        obj = get(path.format(ns=ns, name=name))
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", api)
        into.add(obj, f"cluster: {kind} {ns}/{name}")
        into.explicit.append((kind, ns, name))

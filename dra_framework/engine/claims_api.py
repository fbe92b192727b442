"""Default API-server access of the engine, over a lightkube ``AsyncClient``.

* :func:`lightkube_claim_getter`: GET resource.k8s.io/v1 ResourceClaim → plain dict
  (camelCase, as the API serves it); None on 404.
* :func:`lightkube_status_writer`: server-side apply of ``status.devices`` on the status
  subresource, field manager = driver name, so each driver owns exactly its entries (entries are
  keyed by driver/pool/device/shareID). The body carries ``metadata.uid`` as a precondition, so a
  re-created claim with the same name is never written. Needs RBAC ``resourceclaims/status``
  patch (and on 1.36+ the ``resourceclaims/driver`` ``associated-node:*`` verbs).

Both raise ValueError (naming the field) for a namespace that is not a DNS-1123 label or a name
that is not a DNS-1123 subdomain, before any request: the two are part of the URL path.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..kubenames import check_claim_ref
from ..model import ClaimInfo
from .interfaces import ClaimGetter, StatusWriter

API_VERSION = "resource.k8s.io/v1"


def lightkube_claim_getter(client: Any) -> ClaimGetter:
    from lightkube import ApiError
    from lightkube.resources.resource_v1 import ResourceClaim

    async def get_claim(namespace: str, name: str) -> Mapping[str, Any] | None:
        check_claim_ref(namespace, name)  # both go into the URL path
        try:
            obj = await client.get(ResourceClaim, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return obj.to_dict() if hasattr(obj, "to_dict") else obj
    return get_claim


def lightkube_status_writer(client: Any, driver: str) -> StatusWriter:
    from lightkube import ApiError
    from lightkube.resources.resource_v1 import ResourceClaimStatus
    from lightkube.types import PatchType

    async def write_status(claim: ClaimInfo, devices: list[dict[str, Any]]) -> None:
        check_claim_ref(claim.namespace, claim.name)
        problem = getattr(getattr(client, "health", None), "problem", None)
        if not devices and isinstance(problem, str):
            # Clearing during unprepare is best effort: with the API server known to be down,
            # fail at once instead of holding the kubelet's unprepare for a connect timeout.
            from ..kube import ApiUnavailableError

            raise ApiUnavailableError(problem)
        body = {"apiVersion": API_VERSION, "kind": "ResourceClaim",
                "metadata": {"name": claim.name, "namespace": claim.namespace, "uid": claim.uid},
                "status": {"devices": devices}}
        try:
            await client.patch(ResourceClaimStatus, claim.name, body, namespace=claim.namespace,
                               patch_type=PatchType.APPLY, field_manager=driver, force=True)
        except ApiError as exc:
            if not devices and exc.status.code in (404, 409):
                return  # clearing the status of a claim that is gone or replaced
            raise
    return write_status


__all__ = ["lightkube_claim_getter", "lightkube_status_writer"]

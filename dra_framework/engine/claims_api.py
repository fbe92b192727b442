"""Default API-server access of the engine, over a lightkube ``AsyncClient``.

* :func:`lightkube_claim_getter`: GET resource.k8s.io/v1 ResourceClaim → plain dict
  (camelCase, as the API serves it); None on 404.
* :func:`lightkube_status_writer`: server-side apply of ``status.devices`` on the status
  subresource, field manager = driver name, so each driver owns exactly its entries (entries are
  keyed by driver/pool/device/shareID). The body carries ``metadata.uid`` as a precondition, so a
  re-created claim with the same name is never written. Needs RBAC ``resourceclaims/status``
  patch (and on 1.36+ the ``resourceclaims/driver`` ``associated-node:*`` verbs).

  When the API server refuses the apply as a change of ``status.allocation`` (it re-encodes the
  opaque config parameters copied into the allocation with sorted keys, so a claim written by a
  client that kept another key order fails the immutability check; see docs/failure-modes.md),
  the writer falls back to a JSON patch that replaces ``status.devices`` with the other drivers'
  entries plus ours, guarded by ``test`` operations on the UID and resourceVersion and retried on a
  conflict. Clearing (an empty list) always takes that read-and-patch path, so entries written
  either way are removed; a claim that is gone or re-created is then left alone. Same RBAC verbs
  (get on ``resourceclaims``, patch on ``resourceclaims/status``).

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
        if not devices:
            # Clearing reads the claim and patches: entries written by the fallback below are owned
            # by an Update, which an empty apply would not remove.
            await _json_patch_devices(client, claim, driver, devices)
            return
        body = {"apiVersion": API_VERSION, "kind": "ResourceClaim",
                "metadata": {"name": claim.name, "namespace": claim.namespace, "uid": claim.uid},
                "status": {"devices": devices}}
        try:
            await client.patch(ResourceClaimStatus, claim.name, body, namespace=claim.namespace,
                               patch_type=PatchType.APPLY, field_manager=driver, force=True)
        except ApiError as exc:
            if not _allocation_refused(exc):
                raise
            await _json_patch_devices(client, claim, driver, devices)
    return write_status


def _allocation_refused(exc: Any) -> bool:
    """True for the 422 an apply gets when the server's re-encoding "changed" status.allocation."""
    return exc.status.code == 422 and "status.allocation" in (exc.status.message or "")


_PATCH_ATTEMPTS = 5


async def _json_patch_devices(client: Any, claim: ClaimInfo, driver: str,
                              devices: list[dict[str, Any]]) -> None:
    """Replace this driver's ``status.devices`` entries with a JSON patch (RFC 6902).

    A JSON patch leaves the bytes of untouched fields as stored, so the allocation stays equal.
    ``test`` on ``metadata.uid`` keeps a re-created claim safe and on ``resourceVersion`` keeps a
    concurrent writer's entries; a failed test re-reads the claim (up to 5 attempts).

    Raises:
        lightkube.ApiError: the claim is gone (404; ignored when clearing) or the patch kept
            failing.
        ValueError: the claim was re-created (another ``metadata.uid``); ignored when clearing.
    """
    from lightkube import ApiError
    from lightkube.resources.resource_v1 import ResourceClaim, ResourceClaimStatus
    from lightkube.types import PatchType

    for attempt in range(_PATCH_ATTEMPTS):
        try:
            current = await client.get(ResourceClaim, claim.name, namespace=claim.namespace)
        except ApiError as exc:
            if exc.status.code == 404 and not devices:
                return
            raise
        live = current.to_dict() if hasattr(current, "to_dict") else current
        meta = live.get("metadata") or {}
        if meta.get("uid") != claim.uid:
            if not devices:
                return  # clearing a claim that was replaced: nothing of ours is there
            raise ValueError(f"ResourceClaim {claim.namespace}/{claim.name}: metadata.uid is "
                             f"{meta.get('uid')}, not {claim.uid} (the claim was re-created)")
        others = [d for d in (live.get("status") or {}).get("devices") or []
                  if d.get("driver") != driver]
        ops = [{"op": "test", "path": "/metadata/uid", "value": claim.uid},
               {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
               {"op": "add", "path": "/status/devices", "value": others + devices}]
        try:
            await client.patch(ResourceClaimStatus, claim.name, ops, namespace=claim.namespace,
                               patch_type=PatchType.JSON, field_manager=driver)
            return
        except ApiError as exc:
            # A failed "test" operation is answered with 422; anything else is not ours to retry.
            if exc.status.code != 422 or "test" not in (exc.status.message or "") \
                    or attempt == _PATCH_ATTEMPTS - 1:
                raise


__all__ = ["lightkube_claim_getter", "lightkube_status_writer"]

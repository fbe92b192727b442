"""The API calls the slice controller makes, as raw JSON over lightkube's AsyncClient transport.

Why raw JSON: lightkube's typed models drop fields they do not know when they parse
(docs/resourceslices.md#api), so a read-modify-write PUT of a parsed object would erase fields a
newer API server added. Here objects stay plain dicts from the wire to the next PUT, and only the
fields the driver owns are replaced. Raw requests also give DELETE preconditions (uid +
resourceVersion), which lightkube's ``delete`` has no parameter for.

Only the authenticated transport of the lead's ``AsyncClient`` is used (``client._client``); this
is the one place that touches lightkube internals.
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

from lightkube import ApiError

from .apiversions import GROUP, VERSION

SLICES = f"apis/{GROUP}/{VERSION}/resourceslices"


class Gone(Exception):
    """The watch resourceVersion is too old (HTTP 410): relist."""


def status_code(exc: BaseException) -> int | None:
    if isinstance(exc, ApiError):
        return getattr(exc.status, "code", None) or exc.response.status_code
    return None


def selector(d: dict[str, str] | None) -> str | None:
    if not d:
        return None
    return ",".join(f"{k}={v}" for k, v in d.items())


class KubeAPI:
    """Raw ResourceSlice/Node/discovery calls. ``fields``/``labels`` are equality selectors."""

    def __init__(self, client: Any, field_manager: str = "dra-framework", watch_timeout: int = 300):
        self._gc = client._client          # lightkube GenericAsyncClient
        self._http = self._gc._client      # authenticated httpx2.AsyncClient with the base URL
        self._watch_timeout_params = watch_timeout
        self.field_manager = field_manager
        self._health = getattr(client, "health", None)  # dra_framework.kube.ApiHealth when wrapped
        from ..kube import transport_errors

        self._transport = transport_errors()

    async def _request(self, method: str, path: str, *, params: dict | None = None, body: Any = None) -> Any:
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = self._http.build_request(method, path, params={k: v for k, v in (params or {}).items() if v is not None},
                                       content=content, headers=headers)
        try:
            resp = await self._http.send(req)
        except self._transport as exc:
            if self._health is None:
                raise
            raise self._health.failed(exc) from None
        if self._health is not None:
            self._health.ok()
        self._gc.raise_for_status(resp)
        if not resp.content:
            return None
        return resp.json()

    # discovery
    async def served_versions(self, group: str) -> list[str]:
        try:
            data = await self._request("GET", f"apis/{group}")
        except ApiError as exc:
            if status_code(exc) == 404:
                return []
            raise
        return [v["version"] for v in data.get("versions") or []]

    async def server_version(self) -> dict:
        return await self._request("GET", "version")

    async def get_node(self, name: str) -> dict:
        return await self._request("GET", f"api/v1/nodes/{name}")

    # slices
    async def list_slices(self, fields: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> tuple[list[dict], str]:
        items: list[dict] = []
        cont = None
        while True:
            data = await self._request("GET", SLICES, params={
                "fieldSelector": selector(fields), "labelSelector": selector(labels), "limit": 500, "continue": cont})
            items += data.get("items") or []
            cont = (data.get("metadata") or {}).get("continue")
            if not cont:
                return items, (data.get("metadata") or {}).get("resourceVersion", "")

    async def watch_slices(self, fields: dict[str, str] | None, labels: dict[str, str] | None,
                           resource_version: str) -> AsyncIterator[tuple[str, dict]]:
        params = {"watch": "true", "fieldSelector": selector(fields), "labelSelector": selector(labels),
                  "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": self._watch_timeout_params}
        req = self._http.build_request("GET", SLICES, params={k: v for k, v in params.items() if v is not None},
                                       timeout=self._gc._watch_timeout)
        try:
            resp = await self._http.send(req, stream=True)
        except self._transport as exc:
            if self._health is None:
                raise
            raise self._health.failed(exc) from None
        if self._health is not None:
            self._health.ok()  # a (re)connected watch is how a recovered API server is noticed
        try:
            if resp.status_code == 410:
                raise Gone()
            if resp.status_code >= 400:
                await resp.aread()
                self._gc.raise_for_status(resp)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev.get("type") == "ERROR":
                    code = (ev.get("object") or {}).get("code")
                    if code == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error: {ev.get('object')}")
                yield ev["type"], ev["object"]
        finally:
            await resp.aclose()

    async def create_slice(self, obj: dict) -> dict:
        return await self._request("POST", SLICES, params={"fieldManager": self.field_manager}, body=obj)

    async def update_slice(self, obj: dict) -> dict:
        return await self._request("PUT", f"{SLICES}/{obj['metadata']['name']}",
                                   params={"fieldManager": self.field_manager}, body=obj)

    async def delete_slice(self, name: str, uid: str | None = None, resource_version: str | None = None) -> None:
        """Delete with UID + resourceVersion preconditions. NotFound is fine; a failed
        precondition raises ApiError 409 (someone changed it: resync)."""
        body: dict = {"apiVersion": "v1", "kind": "DeleteOptions"}
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if pre:
            body["preconditions"] = pre
        try:
            await self._request("DELETE", f"{SLICES}/{name}", body=body)
        except ApiError as exc:
            if status_code(exc) == 404:
                return
            raise

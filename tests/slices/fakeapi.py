"""An in-memory stand-in for the KubeAPI calls the slice controller makes (unit tests only).

It implements resourceVersions, generateName, field/label selectors, watches, PUT conflicts on a
stale resourceVersion, DELETE preconditions, and optional dropping of fields (feature gate off).
"""
from __future__ import annotations

import asyncio
import copy
import random
import string
import uuid

from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from dra_framework.slices.kubeapi import Gone


def api_error(code: int, msg: str) -> ApiError:
    return ApiError(status=Status(code=code, message=msg, reason="x"))


class FakeKube:
    def __init__(self, *, minor: int = 37, served=("v1",), nodes=None, drop_fields=()):
        self.minor = minor
        self.served = list(served)
        self.nodes = dict(nodes or {"node-1": "11111111-1111-1111-1111-111111111111"})
        self.objects: dict[str, dict] = {}
        self.rv = 100
        self.watchers: list[tuple[dict, dict | None, asyncio.Queue]] = []
        self.calls = {"create": 0, "update": 0, "delete": 0, "list": 0}
        self.drop_fields = set(drop_fields)  # e.g. {"taints"}
        self.fail_next: list[Exception] = []
        self.history: list[tuple[str, str]] = []

    # helpers
    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _match(self, obj, fields, labels) -> bool:
        for k, v in (fields or {}).items():
            cur = obj
            for part in k.split("."):
                cur = (cur or {}).get(part)
            if (cur or "") != v:
                return False
        for k, v in (labels or {}).items():
            if (obj["metadata"].get("labels") or {}).get(k) != v:
                return False
        return True

    def _notify(self, typ, obj) -> None:
        for fields, labels, q in self.watchers:
            if self._match(obj, fields, labels):
                q.put_nowait((typ, copy.deepcopy(obj)))

    def _drop(self, obj: dict) -> None:
        for d in obj["spec"].get("devices") or []:
            for f in self.drop_fields:
                d.pop(f, None)

    def _maybe_fail(self):
        if self.fail_next:
            raise self.fail_next.pop(0)

    # KubeAPI interface
    async def served_versions(self, group):
        return list(self.served)

    async def server_version(self):
        return {"major": "1", "minor": str(self.minor), "gitVersion": f"v1.{self.minor}.0"}

    async def get_node(self, name):
        if name not in self.nodes:
            raise api_error(404, f'nodes "{name}" not found')
        return {"metadata": {"name": name, "uid": self.nodes[name]}}

    async def list_slices(self, fields=None, labels=None):
        self.calls["list"] += 1
        return [copy.deepcopy(o) for o in self.objects.values() if self._match(o, fields, labels)], str(self.rv)

    async def watch_slices(self, fields, labels, resource_version):
        q: asyncio.Queue = asyncio.Queue()
        entry = (fields, labels, q)
        self.watchers.append(entry)
        try:
            while True:
                item = await q.get()
                if item == "GONE":
                    raise Gone()
                yield item
        finally:
            self.watchers.remove(entry)

    async def create_slice(self, obj):
        self._maybe_fail()
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        if "name" not in meta:
            meta["name"] = meta["generateName"][:58] + "".join(random.choices(string.ascii_lowercase + "2456789", k=5))
        if meta["name"] in self.objects:
            raise api_error(409, "already exists")
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_rv()
        self._drop(obj)
        for d in obj["spec"].get("devices") or []:
            for t in d.get("taints") or []:
                t.setdefault("timeAdded", "2026-01-01T00:00:00Z")
        self.objects[meta["name"]] = obj
        self.calls["create"] += 1
        self.history.append(("create", meta["name"]))
        self._notify("ADDED", obj)
        return copy.deepcopy(obj)

    async def update_slice(self, obj):
        self._maybe_fail()
        obj = copy.deepcopy(obj)
        name = obj["metadata"]["name"]
        cur = self.objects.get(name)
        if cur is None:
            raise api_error(404, "not found")
        if obj["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise api_error(409, "the object has been modified")
        if obj["spec"].get("nodeName") != cur["spec"].get("nodeName"):
            raise api_error(422, "nodeName is immutable")
        obj["metadata"]["uid"] = cur["metadata"]["uid"]
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._drop(obj)
        for d in obj["spec"].get("devices") or []:
            for t in d.get("taints") or []:
                t.setdefault("timeAdded", "2026-01-02T00:00:00Z")
        self.objects[name] = obj
        self.calls["update"] += 1
        self.history.append(("update", name))
        self._notify("MODIFIED", obj)
        return copy.deepcopy(obj)

    async def delete_slice(self, name, uid=None, resource_version=None):
        self._maybe_fail()
        cur = self.objects.get(name)
        if cur is None:
            return
        if uid and cur["metadata"]["uid"] != uid:
            raise api_error(409, "uid precondition failed")
        if resource_version and cur["metadata"]["resourceVersion"] != resource_version:
            raise api_error(409, "resourceVersion precondition failed")
        del self.objects[name]
        self.calls["delete"] += 1
        self.history.append(("delete", name))
        cur = copy.deepcopy(cur)
        cur["metadata"]["resourceVersion"] = self._next_rv()
        self._notify("DELETED", cur)

    # test helpers
    def external_delete(self, name):
        cur = self.objects.pop(name)
        cur["metadata"]["resourceVersion"] = self._next_rv()
        self._notify("DELETED", cur)

    def writes(self) -> int:
        return self.calls["create"] + self.calls["update"] + self.calls["delete"]

    def pool_slices(self, pool):
        return sorted((o for o in self.objects.values() if o["spec"]["pool"]["name"] == pool),
                      key=lambda o: o["metadata"]["name"])

"""The per-pool sync of the ResourceSlice publisher: matching existing slices to desired ones,
deciding the generation, and the writes (delete, update in place, create) with their checks
(see :mod:`dra_framework.slices.controller` for the rules)."""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable

from .apiversions import API_VERSION, Limits
from .convert import GENERATE_NAME_MAX_BASE, KIND, PUBLISHER_LABEL, DesiredPool, generate_name, index_width, owner_reference
from .kubeapi import status_code
from .normalize import MANAGED_SPEC_FIELDS, dropped_paths, normalize_spec, resource_version, strip_list_attributes
from .validate import Issue, Report

log = logging.getLogger("dra_framework.slices.controller")


class PoolSync:
    """The sync half of :class:`~dra_framework.slices.controller.SliceController` (state is
    set up there)."""

    driver: str
    node_name: str
    node_uid: str | None
    limits: Limits | None
    stats: dict[str, int]
    report: Report
    _api: Any
    _on_write: Callable[[str], Any]
    _slices: dict[str, dict]
    _own_rv: dict[str, int]
    _deleted_by_us: set[str]
    _desired: dict[str, DesiredPool] | None
    _dropped: dict[str, set[str]]
    _write_errors: dict[str, Issue]
    _no_list_attributes: bool

    def _emit_report(self) -> None:  # implemented by the controller
        raise NotImplementedError

    # -- the per-pool sync ---------------------------------------------------------------------
    def _parse_index(self, name: str, count: int) -> int | None:
        idx_s, _, _ = name.partition("-")
        if len(idx_s) != index_width(count):
            return None
        try:
            idx = int(idx_s, 16)
        except ValueError:
            return None
        if idx >= count:
            return None
        base = generate_name(idx, count, self.driver, self.node_name)[:GENERATE_NAME_MAX_BASE]
        if not name.startswith(base) or len(name) != len(base) + 5:
            return None
        return idx

    def _desired_spec(self, dp: DesiredPool, index: int, generation: int) -> dict:
        spec = {"driver": self.driver,
                "pool": {"name": dp.name, "generation": generation, "resourceSliceCount": len(dp.slices)},
                **dp.selection(self.node_name), **copy.deepcopy(dp.slices[index])}
        if self._no_list_attributes:
            strip_list_attributes(spec)
        return spec

    def _same(self, actual: dict, desired: dict, pool: str) -> bool:
        dropped = self._dropped.get(pool, set())
        return normalize_spec(actual, dropped) == normalize_spec(desired, dropped)

    async def _sync_pool(self, pool: str) -> None:
        dp = (self._desired or {}).get(pool)
        existing = sorted((s for s in self._slices.values()
                           if s["spec"]["pool"]["name"] == pool and not s["metadata"].get("deletionTimestamp")),
                          key=lambda s: s["metadata"]["name"])
        if dp is None:
            for s in existing:
                await self._delete(s)
            return
        cur_gen = max((int(s["spec"]["pool"].get("generation") or 0) for s in existing), default=0)
        n = len(dp.slices)
        matched: dict[int, dict] = {}
        obsolete: list[dict] = []
        for s in existing:
            idx = self._parse_index(s["metadata"]["name"], n)
            if (int(s["spec"]["pool"].get("generation") or 0) < cur_gen or idx is None or idx in matched
                    or bool(s["spec"].get("nodeName")) != dp.node_local):
                obsolete.append(s)
                continue
            matched[idx] = s
        changed = [i for i, s in matched.items() if not self._same(s["spec"], self._desired_spec(dp, i, cur_gen), pool)]
        new = [i for i in range(n) if i not in matched]
        gen = cur_gen
        # Go rule: a changed resourceSliceCount makes every matched slice "changed", so shrinking
        # to one slice keeps the generation and anything else with matched slices bumps it.
        if new or len(changed) > 1:
            gen = cur_gen + 1
            changed = sorted(matched)
        for s in obsolete:
            await self._delete(s)
        for i in sorted(changed):
            await self._update(matched[i], self._desired_spec(dp, i, gen), pool)
        for i in new:
            await self._create(dp, i, gen, pool)

    # -- writes ----------------------------------------------------------------------------------
    def _metadata_for(self, dp: DesiredPool, index: int) -> dict:
        meta: dict = {"generateName": generate_name(index, len(dp.slices), self.driver, self.node_name)}
        if self.node_uid:
            meta["ownerReferences"] = [owner_reference(self.node_name, self.node_uid)]
        if not dp.node_local:
            meta["labels"] = {PUBLISHER_LABEL: self.node_name}
        return meta

    async def _write(self, call, obj: dict, pool: str) -> dict:
        """One create/update. A 422 on a slice with list attributes means DRAListTypeAttributes is
        off (the server drops the list and then rejects the empty attribute): list attributes are
        then left out from now on, reported once as dropped fields, and the write is retried."""
        try:
            return await call(obj)
        except Exception as exc:
            kinds = strip_list_attributes(copy.deepcopy(obj["spec"]))
            if status_code(exc) != 422 or not kinds or self._no_list_attributes:
                raise
            self._no_list_attributes = True
            log.warning("the API server rejected list attributes (DRAListTypeAttributes off?): they are left out: %s", exc)
            self._dropped.setdefault(pool, set()).update(f"devices[].attributes.*.{k}" for k in kinds)
            self._emit_report()
            strip_list_attributes(obj["spec"])
            return await call(obj)

    async def _create(self, dp: DesiredPool, index: int, gen: int, pool: str) -> None:
        spec = self._desired_spec(dp, index, gen)
        obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": self._metadata_for(dp, index),
                               "spec": spec}
        got = await self._write(self._api.create_slice, obj, pool)
        spec = obj["spec"]  # _write may have changed it (list attributes dropped for an old server)
        self.stats["creates"] += 1
        self._on_write("create")
        self._stored(got)
        self._check_dropped(spec, got, pool)

    async def _update(self, old: dict, spec: dict, pool: str) -> None:
        obj = copy.deepcopy(old)
        obj["apiVersion"], obj["kind"] = API_VERSION, KIND
        new_spec = {k: v for k, v in obj["spec"].items() if k not in MANAGED_SPEC_FIELDS}
        new_spec.update(spec)
        # Keep the server-set timeAdded of taints that are still there.
        old_devs = {d["name"]: d for d in obj["spec"].get("devices") or []}
        for d in new_spec.get("devices") or []:
            od = old_devs.get(d["name"])
            if od and d.get("taints"):
                added = {(t.get("key"), t.get("value", ""), t.get("effect")): t.get("timeAdded") for t in od.get("taints") or []}
                for t in d["taints"]:
                    ta = added.get((t.get("key"), t.get("value", ""), t.get("effect")))
                    if ta:
                        t["timeAdded"] = ta
        obj["spec"] = new_spec
        meta = obj["metadata"]
        meta.pop("managedFields", None)
        if self.node_uid and spec.get("nodeName"):
            refs = [r for r in meta.get("ownerReferences") or [] if not (r.get("kind") == "Node" and r.get("apiVersion") == "v1")]
            meta["ownerReferences"] = [owner_reference(self.node_name, self.node_uid)] + refs
        got = await self._write(self._api.update_slice, obj, pool)
        spec = {k: v for k, v in obj["spec"].items() if k in spec}
        self.stats["updates"] += 1
        self._on_write("update")
        self._stored(got)
        self._check_dropped(spec, got, pool)

    async def _delete(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        self._deleted_by_us.add(name)
        try:
            await self._api.delete_slice(name, obj["metadata"].get("uid"), obj["metadata"].get("resourceVersion"))
        except Exception:
            self._deleted_by_us.discard(name)
            raise
        self.stats["deletes"] += 1
        self._on_write("delete")
        self._slices.pop(name, None)

    def _stored(self, got: dict) -> None:
        name = got["metadata"]["name"]
        self._slices[name] = got
        self._own_rv[name] = resource_version(got)

    def _check_dropped(self, sent: dict, got: dict, pool: str) -> None:
        missing = dropped_paths(sent, got["spec"])
        if not missing:
            return
        known = self._dropped.setdefault(pool, set())
        if missing - known:
            known |= missing
            log.warning("the API server dropped fields of pool %s: %s (feature gate off?); they are ignored from now on",
                        pool, ", ".join(sorted(missing)))
            self._emit_report()

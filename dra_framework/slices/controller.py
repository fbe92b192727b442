"""The async ResourceSlice publisher, with the Go ``resourceslice`` controller's semantics
(docs/resourceslices.md#publishing-semantics-go-controller).

Per pool:

1. The highest ``pool.generation`` among the existing slices is current; lower ones are obsolete.
2. Slices are named ``<hex index>-<driver>-<node>-<random>`` (generateName); existing slices are
   matched to desired slices by the decoded index. A bad prefix, a duplicate or out-of-range index,
   or a node selection that cannot be updated in place makes a slice obsolete.
3. A matched slice has changed when pool, node selection, devices or sharedCounters differ
   (after normalization: quantities by value, taint ``timeAdded`` ignored, fields the server
   dropped ignored).
4. Generation: kept when there are no new slices and at most one matched slice changed (one
   in-place update; a changed ``resourceSliceCount`` counts as a change of every matched slice);
   otherwise (new slices, several changed) bumped by one and *all* matched slices are updated.
   Never lowered.
5. Obsolete slices are deleted first (preconditions UID + resourceVersion), then changed slices
   are updated in place (PUT with the stored object's resourceVersion; taint ``timeAdded`` and
   fields the driver does not own are kept), then missing slices are created.
6. Each write's result is compared with what was sent; fields the server dropped (feature gate
   off) are reported once and then ignored, so there is no write loop.
7. Pools no longer desired get all their slices deleted.

The controller watches its own slices (``spec.driver`` + ``spec.nodeName`` field selectors; for
non-node-local pools ``spec.nodeName=`` + a publisher label), re-syncs a pool ``sync_delay``
seconds after someone else changed or deleted one of its slices, and relists every
``resync_seconds``. ``update()`` is debounced: bursts (many health taints) become one pass.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from .apiversions import Limits, ServerInfo, discover_server
from .convert import (
    PUBLISHER_LABEL,
    DesiredPool,
    build_pools,
)
from ..tasks import Backoff, TaskSupervisor
from .kubeapi import Gone, KubeAPI, status_code
from .normalize import (FEATURE_OF_FIELD, MANAGED_SPEC_FIELDS, dropped_paths, err_text, normalize_spec,
                        resource_version)
from .sync import PoolSync
from .validate import Issue, Report

log = logging.getLogger(__name__)
#: Retries of a failed watch or relist; starts over once events arrive again.
WATCH_BACKOFF = Backoff(initial=0.5, factor=2.0, cap=30.0)

class NodeNotFoundError(RuntimeError):
    pass


# --- the controller --------------------------------------------------------------------------------


class SliceController(PoolSync):
    """Publishes one driver's pools on one node.

    ``client`` is a lightkube ``AsyncClient`` (or pass ``api=`` a ``KubeAPI``-compatible object).
    ``on_report(report)`` is called with a ``Report`` whenever the set of issues changes (invalid
    devices, dropped fields, write errors).
    """

    def __init__(self, client: Any, driver: str, node_name: str, node_uid: str | None = None, *,
                 resync_seconds: float = 600.0, sync_delay: float = 5.0, debounce_seconds: float = 0.2,
                 max_debounce_seconds: float = 2.0, on_report: Callable[[Report], Any] | None = None,
                 taints_possible: bool = False, api: Any = None, field_manager: str = "dra-framework",
                 retry_seconds: float = 1.0, max_retry_seconds: float = 30.0,
                 on_write: Callable[[str], Any] | None = None):
        self.driver = driver
        self.node_name = node_name
        self.node_uid = node_uid
        self.resync_seconds = resync_seconds
        self.sync_delay = sync_delay
        self.debounce_seconds = debounce_seconds
        self.max_debounce_seconds = max_debounce_seconds
        self.taints_possible = taints_possible
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._on_report = on_report
        self._on_write = on_write or (lambda verb: None)  # "create" | "update" | "delete", after success
        self._api = api if api is not None else KubeAPI(client, field_manager)
        self.server: ServerInfo | None = None
        self.limits: Limits | None = None
        self.stats = {"creates": 0, "updates": 0, "deletes": 0}
        self.report = Report()

        self._slices: dict[str, dict] = {}        # our slices by name (raw objects)
        self._own_rv: dict[str, int] = {}         # resourceVersion of our last write per slice
        self._deleted_by_us: set[str] = set()
        self._desired: dict[str, DesiredPool] | None = None
        self._input: Any = None
        self._input_seq = 0
        self._built_seq = 0
        self._validation = Report()
        self._dropped: dict[str, set[str]] = {}
        self._write_errors: dict[str, Issue] = {}
        self._last_report_key: Any = None
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._update_due: float | None = None
        self._first_update: float | None = None
        self._next_resync = 0.0
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._published_once = False
        self._tasks = TaskSupervisor(f"ResourceSlices of {driver}")
        self._scope_rv: dict[str, str] = {}
        self._started = False
        self._watching: set[str] = set()
        self._no_list_attributes = False

    # -- scopes -----------------------------------------------------------------------------------
    def _scopes(self) -> dict[str, tuple[dict, dict | None]]:
        return {
            "node": ({"spec.driver": self.driver, "spec.nodeName": self.node_name}, None),
            "cluster": ({"spec.driver": self.driver, "spec.nodeName": ""}, {PUBLISHER_LABEL: self.node_name}),
        }

    def _in_scope(self, scope: str, obj: dict) -> bool:
        spec = obj.get("spec") or {}
        if scope == "node":
            return spec.get("nodeName") == self.node_name
        return not spec.get("nodeName") and ((obj["metadata"].get("labels") or {}).get(PUBLISHER_LABEL) == self.node_name)

    # -- public API ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Discover the server, look up the Node UID, list the driver's slices and start the watch
        and the worker. Raises UnsupportedServerError or NodeNotFoundError."""
        self.server = await discover_server(self._api)
        self.limits = Limits.for_server(self.server)
        if not self.node_uid:
            try:
                node = await self._api.get_node(self.node_name)
            except Exception as exc:
                if status_code(exc) == 404:
                    raise NodeNotFoundError(
                        f"Node {self.node_name!r} does not exist: node-local ResourceSlices need the Node object "
                        f"as their owner (set NODE_NAME to the name the kubelet registered)") from None
                raise
            self.node_uid = node["metadata"]["uid"]
        for scope in self._scopes():
            await self._relist(scope)
        self._next_resync = time.monotonic() + self.resync_seconds
        self._started = True
        self._tasks.spawn("worker", self._worker)
        self._watching = set()
        self._ensure_watch("node")
        if any(not s["spec"].get("nodeName") for s in self._slices.values()):
            self._ensure_watch("cluster")
        self._wake.set()

    def _ensure_watch(self, scope: str) -> None:
        """Watch a scope. The cluster scope (non-node-local pools) is only watched while this node
        publishes or had such pools, which halves the watches of a typical node-local driver."""
        if scope in self._watching or not self._started:
            return
        self._watching.add(scope)
        self._tasks.spawn(f"watch-{scope}", lambda: self._watch_loop(scope))

    def update(self, pools: Any) -> None:
        """Set the desired pools (DriverInventory, {name: Pool} or [Pool]). Non-blocking; the latest
        call wins; bursts within ``debounce_seconds`` (at most ``max_debounce_seconds``) are merged."""
        self._input = pools
        self._input_seq += 1
        now = time.monotonic()
        if self._first_update is None:
            self._first_update = now
        self._update_due = min(self._first_update + self.max_debounce_seconds, now + self.debounce_seconds)
        self._synced.clear()
        self._wake.set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until the latest ``update()`` is published and no pool has pending work."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    @property
    def published_once(self) -> bool:
        """True once every pool has been published at least once (later updates do not reset it:
        readiness must not flap on each taint change)."""
        return self._published_once

    async def stop(self, delete: bool = False) -> None:
        """Stop watching. ``delete=True`` (uninstall) deletes the driver's own slices on this node;
        a plain stop (restart, upgrade) keeps them so that scheduling continues meanwhile."""
        await self._tasks.close()
        self._tasks = TaskSupervisor(self._tasks.name)  # start() may run again
        self._watching = set()
        self._started = False
        if delete:
            for scope, (fields, labels) in self._scopes().items():
                items, _ = await self._api.list_slices(fields, labels)
                for obj in items:
                    if self._in_scope(scope, obj):
                        await self._delete(obj)

    # -- list / watch ----------------------------------------------------------------------------
    async def _relist(self, scope: str) -> None:
        fields, labels = self._scopes()[scope]
        items, rv = await self._api.list_slices(fields, labels)
        seen = set()
        for obj in items:
            if not self._in_scope(scope, obj):
                continue
            name = obj["metadata"]["name"]
            seen.add(name)
            old = self._slices.get(name)
            if old is None or resource_version(obj) >= resource_version(old):
                if old is None or resource_version(obj) != resource_version(old):
                    self._schedule(obj["spec"]["pool"]["name"], 0.0 if not self._started else self.sync_delay)
                self._slices[name] = obj
        for name in [n for n, o in self._slices.items() if self._in_scope(scope, o) and n not in seen]:
            gone = self._slices.pop(name)
            self._schedule(gone["spec"]["pool"]["name"], self.sync_delay)
        self._scope_rv[scope] = rv

    async def _watch_loop(self, scope: str) -> None:
        fields, labels = self._scopes()[scope]
        delays = WATCH_BACKOFF.delays()
        while True:
            try:
                async for typ, obj in self._api.watch_slices(fields, labels, self._scope_rv[scope]):
                    delays = WATCH_BACKOFF.delays()  # progress: start over
                    rv = obj.get("metadata", {}).get("resourceVersion")
                    if rv:
                        self._scope_rv[scope] = rv
                    if typ == "BOOKMARK":
                        continue
                    if self._in_scope(scope, obj):
                        self._on_event(typ, obj)
            except asyncio.CancelledError:
                raise
            except Gone:
                try:
                    await self._relist(scope)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("relisting ResourceSlices failed: %s", err_text(exc))
                    await asyncio.sleep(next(delays))
            except Exception as exc:
                log.warning("ResourceSlice watch (%s) failed: %s; retrying", scope, err_text(exc))
                await asyncio.sleep(next(delays))

    def _on_event(self, typ: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        pool = (obj.get("spec") or {}).get("pool", {}).get("name", "")
        if typ == "DELETED":
            self._slices.pop(name, None)
            if name in self._deleted_by_us:
                self._deleted_by_us.discard(name)
                return
            log.info("ResourceSlice %s of pool %s was deleted by someone else; re-syncing in %.1fs", name, pool, self.sync_delay)
            self._schedule(pool, self.sync_delay)
            return
        old = self._slices.get(name)
        if old is not None and resource_version(obj) <= resource_version(old):
            return  # stale or our own write, already stored
        self._slices[name] = obj
        if self._own_rv.get(name) == resource_version(obj):
            return
        self._schedule(pool, self.sync_delay)

    def _schedule(self, pool: str, delay: float) -> None:
        at = time.monotonic() + delay
        if pool not in self._due or self._due[pool] > at:
            self._due[pool] = at
        self._synced.clear()
        self._wake.set()

    # -- worker ------------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            now = time.monotonic()
            times = [self._next_resync]
            if self._update_due is not None:
                times.append(self._update_due)
            if self._desired is not None:
                times += self._due.values()
            t = min(times)
            if t > now:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), t - now)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                await self._pass(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ResourceSlice sync pass failed")
                await asyncio.sleep(self.retry_seconds)

    async def _pass(self, now: float) -> None:
        if self._update_due is not None and self._update_due <= now:
            self._update_due = None
            self._first_update = None
            try:
                self._rebuild()
            except Exception as exc:
                log.exception("building ResourceSlices from the inventory failed")
                self._validation = Report(issues=[Issue("*", None, "inventory", f"cannot build slices: {exc!r}")])
                self._emit_report()
                return
        if self._next_resync <= now:
            self._next_resync = now + self.resync_seconds
            for scope in self._scopes():
                try:
                    await self._relist(scope)
                except Exception as exc:
                    log.warning("periodic relist failed: %s", err_text(exc))
            for pool in self._all_pools():
                self._due.setdefault(pool, now)
        if self._desired is None:
            return
        due = sorted(p for p, t in self._due.items() if t <= now)
        for pool in due:
            del self._due[pool]
            try:
                await self._sync_pool(pool)
                self._failures.pop(pool, None)
                if self._write_errors.pop(pool, None) is not None:
                    self._emit_report()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                n = self._failures[pool] = self._failures.get(pool, 0) + 1
                code = status_code(exc)
                delay = 0.05 if code == 409 and n < 3 else min(self.retry_seconds * 2 ** (n - 1), self.max_retry_seconds)
                if code != 409:
                    log.warning("syncing pool %s failed (attempt %d, retry in %.1fs): %s", pool, n, delay, err_text(exc))
                    self._write_errors[pool] = Issue(pool, None, "server", f"publishing failed: {err_text(exc)}")
                    self._emit_report()
                self._due[pool] = time.monotonic() + delay
        if not self._due and self._update_due is None and self._built_seq == self._input_seq:
            self._synced.set()
            self._published_once = True

    def _all_pools(self) -> set[str]:
        pools = {s["spec"]["pool"]["name"] for s in self._slices.values()}
        if self._desired:
            pools |= set(self._desired)
        return pools

    def _rebuild(self) -> None:
        seq = self._input_seq
        desired, report = build_pools(self._input if self._input is not None else [], driver=self.driver,
                                      node_name=self.node_name, limits=self.limits,
                                      taints_possible=self.taints_possible)
        self._built_seq = seq
        if any(not dp.node_local for dp in desired.values()):
            self._ensure_watch("cluster")
        old = self._desired or {}
        self._desired = desired
        self._validation = report
        now = time.monotonic()
        for pool in set(old) | set(desired) | {s["spec"]["pool"]["name"] for s in self._slices.values()}:
            self._due[pool] = now
        self._emit_report()

    def _emit_report(self) -> None:
        rep = Report()
        rep.merge(self._validation)
        for pool, paths in self._dropped.items():
            rep.dropped_fields[pool] = set(paths)
            for p in sorted(paths):
                feat = FEATURE_OF_FIELD.get(p, "a disabled feature gate")
                rep.warn(pool, None, p, f"the API server dropped this field (is {feat} enabled?)")
        for issue in self._write_errors.values():
            rep.add(issue)
        self.report = rep
        key = (tuple(str(i) for i in rep.issues), tuple(sorted((k, tuple(sorted(v))) for k, v in rep.dropped_fields.items())))
        if key == self._last_report_key:
            return
        self._last_report_key = key
        for i in rep.issues:
            (log.warning if i.severity == "error" else log.info)("ResourceSlice publishing: %s", i)
        if self._on_report is not None:
            try:
                self._on_report(rep)
            except Exception:
                log.exception("on_report callback failed")


__all__ = ["FEATURE_OF_FIELD", "MANAGED_SPEC_FIELDS", "NodeNotFoundError", "SliceController", "WATCH_BACKOFF",
           "dropped_paths", "normalize_spec"]

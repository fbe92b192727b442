"""The scheduler's structured allocator for the claims of one pod on one node, in the same search order.

A line-by-line counterpart of ``Allocator.Allocate`` in k8s.io/dynamic-resource-allocation
``structured/internal/experimental`` (1.35+; ``legacy=True`` follows the 1.34 variant where it
differs): requests validated first (class lookup, allocationMode All collects its devices,
at most 32 results), then a depth-first search over requests, firstAvailable subrequests in
order, and devices in pool/slice/device order; a device is taken when it is free, matches the
class and request selectors, fits the requested capacity, its counters are available, its taints
are tolerated and the claim's constraints still hold. CEL errors on a device the search reaches
abort the allocation, as in the scheduler. Returns the first allocation found, like the scheduler.
The claims of a pod are allocated together, in one search (``Allocate`` with all of them): a
later claim sees the devices, counters and capacity the earlier ones take, and the search may
move an earlier claim to other devices when a later one does not fit.
"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Callable

from .capacity import CapacityError, consumption, fits
from .celenv import CelError
from .model import Device, Pool, Slice, placement_matches
from .request import Constraint, Request, Result, untolerated_taint
from .state import AllocatedState, Matcher

MAX_RESULTS = 32  # resourceapi.AllocationResultsMaxSize
#: devices tried before explain gives up on a search (the scheduler stops after 10 s per node,
#: DRASchedulerFilterTimeout; explain is slower, so it counts steps to stay deterministic)
MAX_STEPS = 2_000_000


class AllocationError(Exception):
    """The allocator gives up with an error (invalid input, CEL errors): the scheduler reports it."""


class _MaxSize(Exception):
    pass


def claim_key(claim: dict[str, Any]) -> str:
    meta = claim.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


class Search:
    """One ``Allocate`` call for ``claims`` (one pod's, or one claim) on ``node``; ``run()`` →
    the results per claim, or None, or raises AllocationError."""

    def __init__(self, claims: list[dict[str, Any]], pools: list[Pool], matcher: Matcher, state: AllocatedState,
                 node: dict[str, Any], legacy: bool = False, max_steps: int = MAX_STEPS):
        self.claims, self.pools, self.m, self.state, self.node = claims, pools, matcher, state, node
        self.legacy = legacy
        self.fractional = not legacy
        self.keys = [claim_key(c) for c in claims]
        self.requests: list[list[list[Request]]] = [[] for _c in claims]
        self.selected: dict[tuple[int, int], int] = {}
        self.results: list[list[Result]] = [[] for _c in claims]
        self.allocating: dict[tuple[str, str, str], set[int]] = {}  # device → claims taking it
        self.allocating_cap: dict[tuple[str, str, str], dict[str, Decimal]] = {}
        self.counters_used: dict[str, dict[str, dict[str, Decimal]]] = {}
        self.constraints: list[list[Constraint]] = [[] for _c in claims]
        self.steps, self.max_steps = 0, max_steps
        self._selectable: dict[tuple[int, tuple[str, str, str]], bool] = {}

    # -- validation (``validateDeviceRequest`` and the loop before the search) ----------------
    def prepare(self) -> None:
        for ci, claim in enumerate(self.claims):
            devices = (claim.get("spec") or {}).get("devices") or {}
            total = 0
            for r in devices.get("requests") or []:
                subs = r.get("firstAvailable") or []
                group = ([self._request(ci, s.get("name", ""), r.get("name", ""), s) for s in subs] if subs
                         else [self._request(ci, r.get("name", ""), "", r.get("exactly") or {})])
                self.requests[ci].append(group)
                need = min(g.num for g in group)
                if need > MAX_RESULTS - total:
                    raise AllocationError(f"claim {self.keys[ci]}, request {r.get('name')}: adding {need} devices "
                                          f"exceeds the claim limit of {MAX_RESULTS}, with {total} already accounted for")
                total += need
            for i, c in enumerate(devices.get("constraints") or []):
                if not c.get("matchAttribute") and not c.get("distinctAttribute"):
                    raise AllocationError(f"claim {self.keys[ci]}, constraint #{i}: empty constraint "
                                          "(unsupported constraint type?)")
                self.constraints[ci].append(Constraint(c, self.legacy))

    def _request(self, ci: int, name: str, parent: str, spec: dict[str, Any]) -> Request:
        req = Request(name, parent, spec, claim=ci)
        key = self.keys[ci]
        for i, sel in enumerate(spec.get("selectors") or []):
            if not (sel.get("cel") or {}).get("expression") and not sel.get("cel"):
                raise AllocationError(f"claim {key}, request {name}, selector #{i}: CEL expression empty "
                                      "(unsupported selector type?)")
        cname = spec.get("deviceClassName") or ""
        if not cname:
            raise AllocationError(f"claim {key}, request {name}: missing device class name (unsupported request type?)")
        req.cls = self.m.classes.get(cname)
        if req.cls is None:
            raise AllocationError(f"claim {key}, request {name}: could not retrieve device class {cname}: "
                                  f'deviceclass.resource.k8s.io "{cname}" not found')
        if req.mode == "ExactCount":
            req.num = int(spec.get("count") or 1)
        elif req.mode == "All":
            for pool in self.pools:
                if pool.incomplete or pool.invalid:
                    state = "being updated" if pool.incomplete else "invalid"
                    raise AllocationError(f"claim {key}, request {name}: asks for all devices, but resource "
                                          f"pool {pool} is currently {state}")
                for s in pool.slices:
                    for d in s.devices:
                        if self.selectable(req, d, s) and self._fits(req, d, empty=True) == "":
                            req.all_devices.append((d, s, pool))
            req.num = len(req.all_devices)
        else:
            raise AllocationError(f"claim {key}, request {name}: unsupported count mode {req.mode}")
        return req

    # -- per-device checks ---------------------------------------------------------------------
    def selectable(self, req: Request, d: Device, s: Slice) -> bool:
        """``isSelectable``, cached per request and device like ``deviceMatchesRequest``."""
        key = (id(req), d.id)
        hit = self._selectable.get(key)
        if hit is None:
            hit = self.m.selectors_match(req, d, self.keys[req.claim]) and not (
                s.spec.get("perDeviceNodeSelection") and not placement_matches(d.raw, self.node))
            self._selectable[key] = hit
        return hit

    def _fits(self, req: Request, d: Device, empty: bool = False) -> str:
        in_use = {} if empty else self.state.capacity.get(d.id, {})
        mine = {} if empty else self.allocating_cap.get(d.id, {})
        if not req.capacity and not in_use and not mine and not d.has_policy:
            return ""  # takes each capacity whole, nothing else uses it
        try:
            return fits(d, req.capacity, in_use, mine, self.fractional)
        except CapacityError as exc:
            raise AllocationError(f"claim {self.keys[req.claim]}, request {req.name}: checking capacity for device {d}: {exc}") from exc

    def in_use(self, d: Device) -> bool:
        return d.id in self.state.devices or bool(self.allocating.get(d.id))

    def _taking(self, d: Device, ci: int) -> bool:
        """``allocatingDeviceForClaim``: this claim already takes ``d``."""
        return ci in self.allocating.get(d.id, ())

    def _counters_ok(self, d: Device, pool: Pool) -> bool:
        avail = self.state.available_counters(pool, self.legacy)
        used = self.counters_used.setdefault(str(pool), {})
        for set_name, counters in d.consumption:
            cur = used.setdefault(self.state.counter_key(pool, d, set_name, self.legacy), {})
            for k, v in counters.items():
                cur[k] = cur.get(k, Decimal(0)) + v
        # The allocator compares every counter of the pool; only the sets this device touches can
        # have changed unless the cluster's allocations already over-consume one.
        if self.state.over_consumed(pool, self.legacy):
            scope = list(avail.items())
        else:
            keys = {self.state.counter_key(pool, d, set_name, self.legacy) for set_name, _c in d.consumption}
            scope = [(k, avail.get(k, {})) for k in keys]
        if any(avail_v < used.get(set_name, {}).get(name, Decimal(0))
               for set_name, counters in scope for name, avail_v in counters.items()):
            self._release_counters(d, pool)
            return False
        return True

    def _release_counters(self, d: Device, pool: Pool) -> None:
        used = self.counters_used[str(pool)]
        for set_name, counters in d.consumption:
            cur = used[self.state.counter_key(pool, d, set_name, self.legacy)]
            for k, v in counters.items():
                cur[k] -= v

    def _step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise AllocationError(f"claim {', '.join(self.keys)}: explain gave up after {self.max_steps} steps of its search "
                                  "(the scheduler's allocator stops after 10 s per node, DRASchedulerFilterTimeout)")

    def _legacy_capacity_device(self, req: Request, s: Slice, di: int) -> Device:
        """1.34 re-checked the capacity of the slice's device at the index of the device within
        the request (``slice.Spec.Devices[r.deviceIndex]``), and crashed past the slice's end."""
        if di >= len(s.devices):
            raise AllocationError(f"claim {self.keys[req.claim]}: the 1.34 allocator crashes here (index out of range "
                                  f"[{di}] with length {len(s.devices)} in CmpRequestOverCapacity)")
        return s.devices[di]

    def allocate_device(self, req: Request, d: Device, s: Slice, pool: Pool, must: bool,
                        di: int = 0) -> Callable[[], None] | None:
        """``allocateDevice``: None when the device cannot be taken, else the undo function."""
        undo: list[Callable[[], None]] = []

        def rollback() -> None:
            for f in reversed(undo):
                f()
        multi = d.allow_multiple
        if not multi and req.admin and self._taking(d, req.claim):
            return None
        if not req.admin and self.in_use(d):
            return None
        if s.spec.get("skipNodeOperations") and "DRAOptionalNodeOperations" not in (
                (self.node.get("status") or {}).get("declaredFeatures") or []):
            return None
        skip_counters = not self.legacy and multi and (self.state.capacity_in_use(d) or d.id in self.allocating_cap)
        if not skip_counters and d.consumes:
            if not self._counters_ok(d, pool):
                return None
            if not self.legacy:  # 1.34 keeps the counters when it then skips the device (fixed in 1.35)
                undo.append(lambda: self._release_counters(d, pool))
        if untolerated_taint(d, req, self.legacy) is not None:
            rollback()
            return None
        for c in self.constraints[req.claim]:
            if not c.add(req, d):
                rollback()
                if must:
                    raise AllocationError(f"claim {self.keys[req.claim]}, request {req.name}: cannot add device {d} because a "
                                          "claim constraint would not be satisfied")
                return None
            undo.append(lambda c=c: c.remove(req))  # type: ignore[misc]
        if not multi:
            self.allocating.setdefault(d.id, set()).add(req.claim)
            undo.append(lambda: self.allocating[d.id].discard(req.claim))
        if self._fits(req, self._legacy_capacity_device(req, s, di) if self.legacy else d):
            rollback()
            return None
        res = Result(req, d)
        if multi:
            res.consumed = consumption(d, req.capacity, self.fractional)
            res.share_id = str(uuid.uuid4())
            existed = d.id in self.allocating_cap
            cur = self.allocating_cap.setdefault(d.id, {})
            for k, v in res.consumed.items():
                cur[k] = cur.get(k, Decimal(0)) + v

            def drop(c: dict[str, Decimal] = res.consumed) -> None:
                have = self.allocating_cap.get(d.id)
                if have is not None:
                    for k, v in c.items():
                        have[k] = have.get(k, Decimal(0)) - v
                    if all(v == 0 for v in have.values()):
                        del self.allocating_cap[d.id]
                if existed and d.id not in self.allocating_cap:
                    self.allocating_cap[d.id] = {}
            undo.append(drop)
        elif self.legacy and d.consumes:
            undo.append(lambda: self._release_counters(d, pool))
        results = self.results[req.claim]
        n = len(results)
        results.append(res)
        undo.append(lambda: results.__delitem__(slice(n, None)))
        return rollback

    # -- the search (``allocateOne``) ----------------------------------------------------------
    def run(self) -> list[list[Result]] | None:
        self.prepare()
        try:
            done = self.one(0, 0, 0, 0, False, (0, 0, 0))
        except _MaxSize:
            raise AllocationError("allocation max size exceeded") from None
        if not done:
            if any(p.invalid for p in self.pools):
                raise AllocationError("invalid resource pools were encountered")
            return None
        return [list(r) for r in self.results]

    def one(self, ci: int, ri: int, si: int, di: int, sub: bool, start: tuple[int, int, int]) -> bool:
        if ci >= len(self.claims):
            return True
        if ri >= len(self.requests[ci]):
            try:  # the next claim over the limit: another allocation of this one may still work
                return self.one(ci + 1, 0, 0, 0, False, (0, 0, 0))
            except _MaxSize:
                return False
        group = self.requests[ci][ri]
        if not sub and group[0].parent:
            all_exceeded = True
            for i in range(len(group)):
                try:
                    ok = self.one(ci, ri, i, 0, True, (0, 0, 0))
                except _MaxSize:
                    continue
                all_exceeded = False
                if ok:
                    self.selected[(ci, ri)] = i
                    return True
            if all_exceeded:
                raise _MaxSize()
            return False
        req = group[si]
        if req.mode == "All" and not req.all_devices:
            return False
        if di >= req.num:
            return self.one(ci, ri + 1, 0, 0, False, (0, 0, 0))
        if req.num - di > MAX_RESULTS - len(self.results[ci]):
            raise _MaxSize()
        if req.mode == "All":
            d, s, pool = req.all_devices[di]
            undo = self.allocate_device(req, d, s, pool, must=True, di=di)
            if undo is None:
                return False
            try:  # 1.34 went on with subrequest 0 here (lost the index; fixed in 1.35)
                done = self.one(ci, ri, 0 if self.legacy else si, di + 1, sub, (0, 0, 0))
            except BaseException:
                undo()
                raise
            if not done:
                undo()
            return done
        p0, s0, d0 = start if not self.legacy else (0, 0, 0)
        for pi in range(p0, len(self.pools)):
            pool = self.pools[pi]
            if pool.incomplete or pool.invalid:
                continue
            for sj in range(s0 if pi == p0 else 0, len(pool.slices)):
                s = pool.slices[sj]
                for dj in range(d0 if (pi, sj) == (p0, s0) else 0, len(s.devices)):
                    d = s.devices[dj]
                    self._step()
                    if req.admin and self._taking(d, ci):
                        continue
                    if not req.admin and self.in_use(d):
                        continue
                    if not self.selectable(req, d, s) or self._fits(req, d):
                        continue
                    undo = self.allocate_device(req, d, s, pool, must=False, di=di)
                    if undo is None:
                        continue
                    try:
                        if self.one(ci, ri, si, di + 1, sub, (pi, sj, dj + 1)):
                            return True
                    except BaseException:
                        undo()
                        raise
                    undo()
        return False


__all__ = ["AllocationError", "CelError", "Search"]

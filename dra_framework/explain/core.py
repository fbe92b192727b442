"""``explain``: for each claim, node by node, the allocator's verdict, one allocation, and
for every request and subrequest the devices that match and why each other device does not.

The verdict and the allocation come from :class:`~dra_framework.explain.allocator.Search`, the
same search as the scheduler's allocator; the per-device reasons judge each device alone. The
claims of one pod are allocated together in one search, as the scheduler does (docs/explain.md).
"""
from __future__ import annotations

from typing import Any

from .allocator import AllocationError, Search
from .request import Request, Result
from .inputs import Inputs, Target
from .model import Pool, fmt, gather_pools, make_slice, slice_targets
from .reasons import KINDS, Reason, device_reason
from .state import AllocatedState, Matcher


def _node_obj(inputs: Inputs, name: str) -> dict[str, Any]:
    return inputs.nodes.get(name) or {"metadata": {"name": name}}


def candidate_nodes(inputs: Inputs, target: Target, node: str | None) -> list[str]:
    """``--node``, else the pod's ``spec.nodeName``, else every node the slices or Node objects name."""
    if node:
        return [node]
    if target.pod and (target.pod.get("spec") or {}).get("nodeName"):
        return [target.pod["spec"]["nodeName"]]
    names = set(inputs.nodes) | {s["spec"]["nodeName"] for s in inputs.slices if (s.get("spec") or {}).get("nodeName")}
    return sorted(names) or [""]


def _key(c: dict[str, Any]) -> str:
    meta = c.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def allocation_dict(results: list[Result]) -> dict[str, Any]:
    """Results as ``status.allocation.devices`` (shareID and consumedCapacity for shared devices)."""
    out = []
    for r in results:
        item: dict[str, Any] = {"request": r.request.full_name, "driver": r.device.driver, "pool": r.device.pool,
                                "device": r.device.name}
        if r.request.admin:
            item["adminAccess"] = True
        if r.request.tolerations:
            item["tolerations"] = r.request.tolerations
        if r.share_id:
            item["shareID"] = r.share_id
        if r.consumed:
            item["consumedCapacity"] = {k: fmt(v) for k, v in sorted(r.consumed.items())}
        out.append(item)
    return {"devices": {"results": out}}


class Explainer:
    def __init__(self, inputs: Inputs, legacy: bool = False, max_steps: int | None = None):
        self.inputs, self.legacy = inputs, legacy
        self.max_steps = max_steps
        self.matcher = Matcher(inputs.classes, legacy)
        self._pools: dict[str, list[Pool]] = {}

    def pools(self, node: str) -> list[Pool]:
        if node not in self._pools:
            self._pools[node] = gather_pools(self.inputs.slices, _node_obj(self.inputs, node), self.legacy)
        return self._pools[node]

    def explain(self, node: str | None = None) -> dict[str, Any]:
        """The whole report; ``satisfiable`` is true when every claim is."""
        groups: list[list[Target]] = []
        for t in self.inputs.targets():
            if t.pod is not None and groups and groups[-1][0].pod is t.pod:
                groups[-1].append(t)
            else:
                groups.append([t])
        claims = [c for g in groups for c in self._group(g, node)]
        return {"satisfiable": all(c["satisfiable"] for c in claims), "claims": claims}

    def _group(self, group: list[Target], node: str | None) -> list[dict[str, Any]]:
        """The claims of one pod (or one claim): allocated together in one search, as the scheduler does."""
        keys = {_key(t.claim) for t in group}
        others = [c for c in self.inputs.claims if _key(c) not in keys]
        base = AllocatedState.from_claims(others)
        verdicts: dict[str, list[dict[str, Any]]] = {}
        for n in candidate_nodes(self.inputs, group[0], node):
            verdicts[n] = self.search_joint([t.claim for t in group], n, base)
        chosen = next((n for n, vs in verdicts.items() if vs[0]["satisfiable"]), next(iter(verdicts)))
        out = []
        for i, t in enumerate(group):
            v = verdicts[chosen][i]
            # the devices of the pod's other claims are in use for this one's per-device reasons
            siblings = [{"metadata": dict(zip(("namespace", "name"), _key(o.claim).split("/", 1), strict=True)),
                         "status": {"allocation": verdicts[chosen][j]["allocation"]}}
                        for j, o in enumerate(group) if j != i and verdicts[chosen][j]["allocation"]]
            state = AllocatedState.from_claims(others + siblings) if siblings else base
            entry = {"claim": _key(t.claim), "source": t.source, "node": chosen, **v,
                     "requests": self.requests(t.claim, chosen, state)}
            if len(verdicts) > 1:
                entry["nodes"] = {n: {k: vs[i][k] for k in ("satisfiable", "error")} for n, vs in verdicts.items()}
            if not v["satisfiable"] and not v["error"]:
                alone = len(group) > 1 and self.search(t.claim, chosen, base)["satisfiable"]
                entry["why"] = ([f"this claim alone fits, but not together with the pod's other claims "
                                 f"({', '.join(_key(o.claim) for o in group if o is not t)}): the scheduler allocates "
                                 "them together and they need more devices, counters or capacity than are free"]
                                if alone else self.why(t.claim, chosen, base, entry["requests"]))
            out.append(entry)
        return out

    def search_joint(self, claims: list[dict[str, Any]], node: str, state: AllocatedState) -> list[dict[str, Any]]:
        """One search for all ``claims`` (a pod's): per claim ``{"satisfiable", "error", "allocation"}``,
        the same verdict and error for all."""
        s = Search(claims, self.pools(node), self.matcher, state, _node_obj(self.inputs, node), self.legacy,
                   **({"max_steps": self.max_steps} if self.max_steps else {}))
        try:
            results = s.run()
        except AllocationError as exc:
            return [{"satisfiable": False, "error": str(exc), "allocation": None} for _c in claims]
        if results is None:
            return [{"satisfiable": False, "error": None, "allocation": None} for _c in claims]
        return [{"satisfiable": True, "error": None, "allocation": allocation_dict(r)} for r in results]

    def search(self, claim: dict[str, Any], node: str, state: AllocatedState,
               drop_constraints: bool = False) -> dict[str, Any]:
        if drop_constraints:
            claim = {**claim, "spec": {"devices": {**claim["spec"].get("devices", {}), "constraints": []}}}
        return self.search_joint([claim], node, state)[0]

    def requests(self, claim: dict[str, Any], node: str, state: AllocatedState) -> list[dict[str, Any]]:
        """Per request and subrequest: the devices that match and the first reason of the others."""
        nodeobj = _node_obj(self.inputs, node)
        pools = self.pools(node)
        by_id = {(p.driver, p.name): p for p in pools}
        out = []
        for r in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
            subs = r.get("firstAvailable") or []
            for one, name, parent in ([(s, s.get("name", ""), r.get("name", "")) for s in subs] if subs
                                      else [(r.get("exactly") or {}, r.get("name", ""), "")]):
                req = Request(name, parent, one, self.inputs.classes.get(one.get("deviceClassName", "")))
                entry: dict[str, Any] = {"request": req.full_name, "deviceClassName": one.get("deviceClassName"),
                                         "allocationMode": req.mode}
                if req.mode == "ExactCount":
                    entry["count"] = int(one.get("count") or 1)
                if req.cls is None:
                    entry["error"] = f"DeviceClass {one.get('deviceClassName')!r} not found"
                    out.append(entry)
                    continue
                devices = []
                for sobj in self.inputs.slices:
                    targets = slice_targets(sobj.get("spec") or {}, nodeobj)
                    pool = by_id.get(((sobj.get("spec") or {}).get("driver", ""),
                                      ((sobj.get("spec") or {}).get("pool") or {}).get("name", "")))
                    s = make_slice(sobj)
                    if pool is not None and targets and not pool.incomplete and not pool.invalid:
                        s = next((x for x in pool.slices if x.name == s.name), s)
                    for d in s.devices:
                        reason = device_reason(req, d, s, pool if targets else None, state, self.matcher,
                                               nodeobj, self.legacy, pools)
                        devices.append({"device": str(d), **reason.as_dict()})
                devices.sort(key=lambda x: KINDS.index(x["reason"]))
                entry["matching"] = [x["device"] for x in devices if x["reason"] == "ok"]
                entry["devices"] = devices
                out.append(entry)
        return out

    def why(self, claim: dict[str, Any], node: str, state: AllocatedState, requests: list[dict[str, Any]]) -> list[str]:
        """A summary of an unsatisfiable claim without an allocator error."""
        out = []
        by_parent: dict[str, list[dict[str, Any]]] = {}
        for r in requests:
            by_parent.setdefault(r["request"].split("/")[0], []).append(r)
        short = False
        for subs in by_parent.values():
            fits_alone = []
            for r in subs:
                have = len(r.get("matching", []))
                need = r.get("count", 1) if r["allocationMode"] == "ExactCount" else 1
                if r.get("error"):
                    out.append(f"request {r['request']}: {r['error']}")
                elif have < need:
                    out.append(f"request {r['request']}: needs {need} device(s), {have} match and are free")
                else:
                    fits_alone.append(r)
            short = short or not fits_alone
        if short:
            return out
        constraints = ((claim.get("spec") or {}).get("devices") or {}).get("constraints") or []
        if constraints and self.search(claim, node, state, drop_constraints=True)["satisfiable"]:
            for c in constraints:
                one = {**claim, "spec": {"devices": {**claim["spec"]["devices"], "constraints": [c]}}}
                if not self.search(one, node, state)["satisfiable"]:
                    what = "matchAttribute" if c.get("matchAttribute") else "distinctAttribute"
                    scope = f" over requests {', '.join(c['requests'])}" if c.get("requests") else ""
                    out.append(f"constraint {what} {c.get(what)}{scope} cannot be met by the matching devices")
            return out or ["the constraints together cannot be met by the matching devices"]
        out.append("the matching devices cannot be combined: together the requests need more devices, counters "
                   "or capacity than are free (each device alone would fit)")
        return out


def explain(inputs: Inputs, node: str | None = None, legacy: bool = False) -> dict[str, Any]:
    return Explainer(inputs, legacy).explain(node)


__all__ = ["Explainer", "Reason", "explain"]

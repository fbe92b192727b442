"""The ``explain`` report as text for people (JSON and YAML print the report dict as is)."""
from __future__ import annotations

from typing import Any

_SHOW = 4  # device names shown per group of devices with the same reason


def _group_key(d: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    return (d["reason"], d.get("detail", ""), tuple(d.get("values", [])))


def _names(devs: list[str], all_: bool) -> str:
    short = [x.rsplit("/", 1)[-1] for x in devs]
    if all_ or len(short) <= _SHOW:
        return ", ".join(short)
    return ", ".join(short[:_SHOW]) + f", ... (+{len(short) - _SHOW} more)"


def text(report: dict[str, Any], all_devices: bool = False) -> str:
    lines: list[str] = []
    for c in report["claims"]:
        verdict = "SATISFIABLE" if c["satisfiable"] else ("ERROR" if c.get("error") else "NOT SATISFIABLE")
        node = c.get("node") or "(no node named by the slices)"
        lines.append(f"{c['source']}: {verdict} on node {node}")
        for n, v in (c.get("nodes") or {}).items():
            if n != c.get("node"):
                lines.append(f"  node {n}: {'satisfiable' if v['satisfiable'] else 'error' if v['error'] else 'not satisfiable'}")
        if c.get("error"):
            lines.append(f"  allocator error: {c['error']}")
        for r in c["requests"]:
            head = f"  request {r['request']} (class {r['deviceClassName']}, "
            head += f"{r['count']} device(s))" if r["allocationMode"] == "ExactCount" else "all matching devices)"
            lines.append(head)
            if r.get("error"):
                lines.append(f"    error: {r['error']}")
                continue
            lines.append(f"    matching ({len(r['matching'])}): {_names(r['matching'], all_devices) or 'none'}")
            groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
            for d in r["devices"]:
                if d["reason"] != "ok":
                    groups.setdefault(_group_key(d), []).append(d["device"])
            merged: dict[tuple[str, str], list[tuple[tuple[str, ...], list[str]]]] = {}
            for (kind, detail, values), devs in groups.items():
                merged.setdefault((kind, detail), []).append((values, devs))
            for (kind, detail), parts in merged.items():
                devs = [x for _v, ds in parts for x in ds]
                lines.append(f"    {kind} ({len(devs)}): {detail}")
                if len(parts) == 1 or all_devices:
                    for values, ds in parts:
                        lines.append(f"      {_names(ds, all_devices)}" + (f"  [{'; '.join(values)}]" if values else ""))
                else:
                    values, ds = parts[0]
                    lines.append(f"      {_names(devs, False)}  e.g. {ds[0].rsplit('/', 1)[-1]}: [{'; '.join(values)}]")
        for w in c.get("why") or []:
            lines.append(f"  why: {w}")
        alloc = (c.get("allocation") or {}).get("devices", {}).get("results") or []
        if alloc:
            lines.append("  allocation:")
            for a in alloc:
                extra = f" consumes {a['consumedCapacity']}" if a.get("consumedCapacity") else ""
                lines.append(f"    {a['request']}: {a['driver']}/{a['pool']}/{a['device']}{extra}")
    return "\n".join(lines) + "\n"

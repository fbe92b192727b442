"""The inspecting sub-commands of ``dra-framework``: ``plugins`` (installed backends),
``discover`` (what each driver would publish) and ``validate`` (config, sockets, ResourceSlice
rules, CDI directory). Exit status as documented in :mod:`dra_framework.cli`."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from .cli import CONFIG_ENV, Progress, _need_drivers, _rules, _settings
from .config import Settings, cdi_kind, driver_socket_paths
from .errors import DraFrameworkError


def _fmt_value(v: Any) -> str:
    return str(getattr(v, "value", v))


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import Registry

    reg = Registry()
    rows = [(t.name, t.plugin, t.distribution, t.version, t.description) for t in sorted(reg.types.values(), key=lambda t: t.name)]
    if args.output == "json":
        print(json.dumps([dict(zip(("backend", "plugin", "distribution", "version", "description"), r, strict=True)) for r in rows]
                         + [{"plugin": k, "error": v} for k, v in reg.broken.items()], indent=2))
        return 0
    widths = [max(len(str(r[i])) for r in rows + [("BACKEND", "PLUGIN", "DISTRIBUTION", "VERSION", "")]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(("BACKEND", "PLUGIN", "DISTRIBUTION", "VERSION"), widths, strict=False)) + "  DESCRIPTION")
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    for name, err in reg.broken.items():
        print(f"BROKEN {name}: {err}", file=sys.stderr)
    return 0


async def _discover_all(settings: Settings, progress: Progress):
    from .composition import build_backends, discover
    from .plugins import Registry

    progress.step("loading plugins")
    reg = Registry()
    out = []
    for i, d in enumerate(settings.drivers):
        progress.step(f"starting backends of {d.name}")
        backends = build_backends(settings, i, d, reg)
        progress.step(f"discovering devices of {d.name}")
        inv = await discover(backends)
        out.append((d, backends, inv))
    progress.done()
    return out


def _device_rows(driver: str, node: str, inv) -> list[list[str]]:
    rows = []
    for pool in inv.pools.values():
        pname = pool.name or node
        for cs in pool.counter_sets:
            rows.append([driver, pname, f"[counters] {cs.name}", "", ", ".join(f"{k}={_fmt_value(v)}" for k, v in cs.counters.items())])
        for dev in pool.devices:
            attrs = ", ".join(f"{k}={_fmt_value(v)}" for k, v in dev.attributes.items())
            caps = ", ".join(f"{k}={_fmt_value(v)}" for k, v in dev.capacity.items())
            cons = "; ".join(f"{c.counter_set}: " + ",".join(f"{k}={_fmt_value(v)}" for k, v in c.counters.items())
                             for c in dev.consumes_counters)
            rows.append([driver, pname, dev.name, attrs, caps + (f" | consumes {cons}" if cons else "")])
    return rows


def cmd_discover(args: argparse.Namespace) -> int:
    settings = _settings(args, require_node_name=False)
    _need_drivers(settings, args, "discover")
    results = asyncio.run(_discover_all(settings, Progress()))
    failed = False  # a device that would not be published: exit 1 after printing everything
    if args.output in ("yaml", "json"):
        from .slices import desired_slices

        objs = []
        for d, _backends, inv in results:
            slices, report = desired_slices(inv, driver=d.name, node_name=settings.node_name,
                                            server=args.k8s_version)
            objs.extend(slices)
            for issue in report.issues:
                print(f"{issue.severity}: driver {d.name}: {issue}", file=sys.stderr)
            failed = failed or bool(report.errors)
        doc = {"apiVersion": "v1", "kind": "List", "items": objs}
        if args.output == "json":
            print(json.dumps(doc, indent=2))
        else:
            import yaml

            print(yaml.safe_dump(doc, sort_keys=False), end="")
        return 1 if failed else 0
    from .slices import build_pools

    rows = [["DRIVER", "POOL", "DEVICE", "ATTRIBUTES", "CAPACITY"]]
    for d, _backends, inv in results:
        _desired, report = build_pools(inv, driver=d.name, node_name=settings.node_name, server=args.k8s_version)
        invalid = {(pool, dev) for pool, devs in report.invalid_devices.items() for dev in devs}
        for row in _device_rows(d.name, settings.node_name, inv):
            if (row[1], row[2]) in invalid:
                row[2] += " (INVALID: not published)"
            rows.append(row)
        for issue in report.issues:
            print(f"{issue.severity}: driver {d.name}: {issue}", file=sys.stderr)
        failed = failed or bool(report.errors)
    print(f"ResourceSlice rules of Kubernetes {_rules(args)}", file=sys.stderr)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=False)) + "  " + r[3] + ("  " + r[4] if r[4] else ""))
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    settings = _settings(args, require_node_name=False)
    if not (args.config or os.environ.get(CONFIG_ENV)):
        _need_drivers(settings, args, "validate")
    problems: list[str] = []
    results = asyncio.run(_discover_all(settings, Progress()))
    from .slices import build_pools

    if not settings.drivers:
        problems.append("drivers: no driver configured (`run` needs at least one)")
    for d, backends, inv in results:
        n = sum(len(p.devices) for p in inv.pools.values())
        _desired, report = build_pools(inv, driver=d.name, node_name=settings.node_name, server=args.k8s_version)
        problems.extend(f"driver {d.name}: {issue}" for issue in report.errors)
        for issue in report.warnings:
            print(f"warning: driver {d.name}: {issue}", file=sys.stderr)
        print(f"driver {d.name}: {len(inv.pools)} pool(s), {n} device(s)")
        paths = driver_socket_paths(settings, d)  # load_settings checked that they fit
        for what, path in (("registration", paths.registration), ("dra", paths.dra)):
            note = ", short fallback name" if what in paths.fallback else ""
            print(f"driver {d.name}: {what} socket {path} ({len(path.encode())} bytes{note})")
        for b in backends:  # build_backends checked that they exist
            try:  # what the driver's start-up asks of the backend besides discovery
                types = asyncio.run(b.hooks.config_types())
            except DraFrameworkError as exc:
                problems.append(f"driver {d.name}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a backend bug: name it, as start-up would
                problems.append(f"driver {d.name}: backend {b.key}: dra_config_types failed: {type(exc).__name__}: "
                                + " ".join(str(exc).split()))
            else:
                if types:
                    print(f"driver {d.name}: backend {b.key}: opaque configs " + ", ".join(
                        f"{t.api_version}/{t.kind}" for t in types))
            pol = b.cdi_policy.model_dump(by_alias=True)
            print(f"driver {d.name}: backend {b.key}: CDI policy " + " ".join(
                f"{k}={list(v) if isinstance(v, tuple) else str(v).lower()}" for k, v in pol.items()))
            for opt, path in b.static_host_paths.items():
                print(f"driver {d.name}: backend {b.key}: options.{opt} {path} exists under hostRoot {b.context.host_root}")
    if args.cdi_dir:
        own = {"/".join(cdi_kind(d)) for d in settings.drivers}
        problems.extend(_cdi_dir_problems(args.cdi_dir, own))
    for p in problems:
        print(f"invalid: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"config valid (ResourceSlice rules of Kubernetes {_rules(args)})")
    return 0


def _cdi_dir_problems(cdi_dir: str, own_kinds: set[str]) -> list[str]:
    """Validate every spec file of a CDI directory the way ``validate`` reports it: by the CDI
    schema, Go library and SPEC rules, and the specs of ``own_kinds`` (``vendor/class`` of the
    config's drivers) also by the framework's own policy (docs/cdi.md). Other tools' specs may
    follow their own policy (nvidia-ctk writes a newer cdiVersion than a spec needs)."""
    from pathlib import Path

    from .cdi.errors import CdiError, CdiValidationError
    from .cdi.validate import POLICY, spec_issues, validate_spec_file

    root = Path(cdi_dir)
    if not root.is_dir():
        return [f"CDI dir {cdi_dir}: not a directory"]
    out = []
    n = 0
    for f in sorted(root.iterdir()):
        if f.name.startswith(".") or f.suffix not in (".json", ".yaml", ".yml"):
            continue  # runtimes skip these too (temp files of atomic writes)
        n += 1
        try:
            spec = validate_spec_file(str(f), strict=False)  # parses; schema and Go library rules
            issues = [i for i in spec_issues(spec) if spec.get("kind") in own_kinds or i.rule != POLICY]
            if issues:
                raise CdiValidationError(issues, source=str(f))
        except (CdiError, ValueError, OSError) as exc:
            out.append(str(exc) if str(f) in str(exc) else f"CDI spec {f}: {exc}")
        except RecursionError:
            out.append(f"CDI spec {f}: nested too deeply")
    print(f"CDI dir {cdi_dir}: {n} spec(s) checked")
    return out


__all__ = ["cmd_discover", "cmd_plugins", "cmd_validate"]

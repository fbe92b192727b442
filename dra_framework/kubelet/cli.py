"""`dra-framework kubelet ...`: act like a kubelet against a DRA driver.

Subcommands (each prints JSON to stdout; exit 0 ok, 1 failure, 2 usage):
  register-check  GetInfo + validation + dial (+ --notify)
  prepare         NodePrepareResources   (--claim NAMESPACE/NAME/UID ...)
  unprepare       NodeUnprepareResources (--claim NAMESPACE/NAME/UID ...)
  watch-health    NodeWatchResources, one JSON line per message
The main CLI creates the `kubelet` command, passes its subparsers to
`add_kubelet_subcommands` and then calls `args.func(args)`; `main()` runs
this module standalone.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from .sockets import DEFAULT_KUBELET_ROOT
from .types import CALL_TIMEOUT, ClaimRef

if TYPE_CHECKING:
    from types import ModuleType


def _client() -> ModuleType:
    from . import client

    return client


def _print(obj: Any) -> None:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    print(json.dumps(obj, sort_keys=True, default=str), flush=True)


def _claim(text: str) -> ClaimRef:
    # NAMESPACE up to the first "/", UID after the last: the name in between is sent as given
    # (the driver validates it), so malformed names can be tried through this command too.
    ns, _, rest = text.partition("/")
    name, _, uid = rest.rpartition("/")
    if not (ns and name and uid):
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME/UID, got {text!r}")
    return ClaimRef(namespace=ns, name=name, uid=uid)


def _seconds(zero_ok: bool):
    """argparse type: a finite number of seconds, > 0 (or >= 0 where 0 means no limit)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds {'>= 0' if zero_ok else '> 0'}, got {text!r}")
        return value
    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--driver", required=True, help="DRA driver name (required)")
    p.add_argument("--kubelet-root-dir", "--kubelet-root", dest="kubelet_root",
                   default=os.environ.get("DRA_FRAMEWORK_KUBELET_ROOT_DIR", DEFAULT_KUBELET_ROOT),
                   help="kubelet --root-dir (default: %(default)s; env DRA_FRAMEWORK_KUBELET_ROOT_DIR)")
    p.add_argument("--registry-dir", help="registration socket directory (default: "
                                          "<kubelet-root-dir>/plugins_registry)")
    p.add_argument("--pod-uid", help="driver pod UID, for rolling-update socket names (default: none)")
    p.add_argument("--endpoint", help="DRA socket path (default: the endpoint GetInfo reports)")


async def _resolve(args: argparse.Namespace, kind: str) -> tuple[str, str]:
    """Endpoint and API version: explicit flags, else what a kubelet would pick."""
    version = args.api_version
    if args.endpoint and version != "auto":
        return args.endpoint, version
    sock = await _client().find_registration_socket(args.kubelet_root, args.driver, args.pod_uid, args.registry_dir)
    info = _client().validate_info(await _client().get_info(sock), args.driver, sock)
    if version == "auto":
        version = info.dra_version if kind == "dra" else (info.health_version or "v1alpha1")
    return args.endpoint or info.endpoint, version


async def _register_check(args: argparse.Namespace) -> int:
    _print(await _client().register_check(args.kubelet_root, args.driver, args.pod_uid,
                                       registry_dir=args.registry_dir, notify=args.notify))
    return 0


async def _prepare(args: argparse.Namespace) -> int:
    endpoint, version = await _resolve(args, "dra")
    res = await _client().prepare(endpoint, args.claim, version, timeout=args.timeout)
    _print({"endpoint": endpoint, "version": version,
            "claims": {uid: dataclasses.asdict(o) for uid, o in res.items()}})
    return 1 if any(o.error for o in res.values()) else 0


async def _unprepare(args: argparse.Namespace) -> int:
    endpoint, version = await _resolve(args, "dra")
    res = await _client().unprepare(endpoint, args.claim, version, timeout=args.timeout)
    _print({"endpoint": endpoint, "version": version, "claims": {u: {"error": e} for u, e in res.items()}})
    return 1 if any(res.values()) else 0


async def _watch_health(args: argparse.Namespace) -> int:
    endpoint, version = await _resolve(args, "health")
    seen = 0

    async def run() -> None:
        nonlocal seen
        async for devices in _client().watch_health(endpoint, version):
            _print({"endpoint": endpoint, "version": version, "devices": [dataclasses.asdict(d) for d in devices]})
            seen += 1
            if args.count and seen >= args.count:
                return

    try:
        await asyncio.wait_for(run(), args.timeout or None)
    except asyncio.TimeoutError:
        pass
    return 0 if seen else 1


def _runner(coro_fn):
    def run(args: argparse.Namespace) -> int:
        import grpc

        try:
            return asyncio.run(coro_fn(args))
        except _client().KubeletCheckError as exc:
            _print({"error": str(exc)})
        except grpc.aio.AioRpcError as exc:
            _print({"error": exc.details() or "", "code": exc.code().name})
        except (ValueError, OSError) as exc:
            _print({"error": str(exc)})
        return 1
    return run


def add_kubelet_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add the four subcommands to `sub` (the subparsers of a `kubelet`
    command); each sets `func(args) -> int`."""

    p = sub.add_parser("register-check", help="GetInfo, validate like the kubelet, dial the endpoint")
    _common(p)
    p.add_argument("--notify", action="store_true", help="send NotifyRegistrationStatus afterwards (default: off)")
    p.set_defaults(func=_runner(_register_check))

    for name, fn, helptext in (("prepare", _prepare, "NodePrepareResources"),
                               ("unprepare", _unprepare, "NodeUnprepareResources")):
        p = sub.add_parser(name, help=helptext)
        _common(p)
        p.add_argument("--claim", type=_claim, action="append", required=True, metavar="NAMESPACE/NAME/UID",
                       help="a claim to send; repeat for several (required)")
        p.add_argument("--api-version", choices=("auto", "v1", "v1beta1"), default="auto",
                       help="DRA gRPC API version; auto: what the kubelet would pick from GetInfo")
        p.add_argument("--timeout", type=_seconds(zero_ok=False), default=CALL_TIMEOUT,
                       help="seconds to wait for the answer (default: %(default)s, as the kubelet)")
        p.set_defaults(func=_runner(fn))

    p = sub.add_parser("watch-health", help="NodeWatchResources; one JSON line per message")
    _common(p)
    p.add_argument("--api-version", choices=("auto", "v1", "v1alpha1"), default="auto",
                   help="health gRPC API version; auto: what the kubelet would pick from GetInfo")
    p.add_argument("--count", type=_count, default=1, help="stop after N messages (0 = no limit; default: 1)")
    p.add_argument("--timeout", type=_seconds(zero_ok=True), default=0.0,
                   help="stop after N seconds (0 = no limit; default: 0)")
    p.set_defaults(func=_runner(_watch_health))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dra-framework")
    kp = parser.add_subparsers(dest="command", required=True).add_parser(
        "kubelet", help="act like a kubelet against a DRA driver's sockets")
    add_kubelet_subcommands(kp.add_subparsers(dest="kubelet_command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

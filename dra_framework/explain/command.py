"""``dra-framework explain``: arguments and the command (docs/explain.md).

Exit status: 0 every claim is satisfiable, 1 one is not (or the allocator reports an error for
it), 2 bad input (files, names, kubeconfig).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    e = sub.add_parser("explain", formatter_class=formatter,
                       help="which devices a claim can get and why the others do not, as the scheduler decides")
    e.add_argument("names", nargs="*", metavar="KIND/NAME",
                   help="pod/NAME, resourceclaim/NAME or resourceclaimtemplate/NAME in the cluster (needs --kubeconfig)")
    e.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help="claims, templates, pods, DeviceClasses, ResourceSlices, Nodes and allocated claims: "
                        "multi-document YAML, JSON or a List (discover -o yaml output as is); - for stdin; repeatable")
    e.add_argument("--kubeconfig", help="also read DeviceClasses, ResourceSlices, ResourceClaims and Nodes from "
                                        "this cluster (default: offline, files only)")
    e.add_argument("-n", "--namespace", default="default", help="namespace of KIND/NAME")
    e.add_argument("--node", help="explain for this node (default: the pod's nodeName, else every node the "
                                  "slices name; the first that fits is shown)")
    e.add_argument("--k8s-version", default="1.37", metavar="VERSION",
                   help="the scheduler's allocator of this Kubernetes version: 1.34 differs (counter sets "
                        "per slice); 1.35 and newer are the same")
    e.add_argument("--all", action="store_true", help="table: name every device instead of the first few per reason")
    e.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table", help="output format")
    e.set_defaults(func=cmd_explain)


def _legacy(version: str) -> bool:
    import re

    m = re.fullmatch(r"v?1\.(\d+)(\.\d+)?", version.strip())
    if not m or int(m.group(1)) < 34:
        from .inputs import InputError

        raise InputError(f"--k8s-version {version!r}: expected 1.34 or newer (resource.k8s.io/v1)")
    return int(m.group(1)) == 34


def cmd_explain(args: argparse.Namespace) -> int:
    from .inputs import InputError, Inputs, read_file

    try:
        from .core import Explainer
    except ImportError as exc:  # the optional CEL dependencies
        print(f"error: explain needs {exc.name}: pip install 'dra-framework[explain]'", file=sys.stderr)
        return 2
    inputs = Inputs()
    try:
        legacy = _legacy(args.k8s_version)
        for path in args.filename:
            read_file(path, inputs)
        if args.names and not args.kubeconfig:
            raise InputError(f"{args.names[0]}: names are looked up in a cluster: pass --kubeconfig (or use -f FILE)")
        if args.kubeconfig:
            from .cluster import load

            load(args.kubeconfig, args.names, args.namespace, inputs)
        if not args.filename and not args.kubeconfig:
            raise InputError("nothing to read: pass -f FILE (claims, classes, slices) or --kubeconfig")
        targets = inputs.targets()
        if not targets:
            raise InputError("nothing to explain: give a ResourceClaim (without status.allocation), a "
                             "ResourceClaimTemplate or a Pod")
        report = Explainer(inputs, legacy).explain(args.node)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(report, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(report, sort_keys=False), end="")
    else:
        from .render import text

        sys.stdout.write(text(report, args.all))
    return 0 if report["satisfiable"] else 1

#!/usr/bin/env python3
"""dra-framework (example backend) against a Go driver on the official kubelet-plugin helper,
side by side in one run against one real kube-apiserver (benchmarks/README.md).

Both drivers run as processes on their own Node, publish the same devices (the Go driver
publishes the slices the framework published) and are called over their unix sockets by one
Go client that behaves like the kubelet (benchmarks/go-driver/cmd/dra-bench-client). Each round
measures both, in alternating order; ratios are Python / Go per round, medians over rounds.

    .venv/bin/python benchmarks/vs_go.py                    # full run (~15 min on 2 cores)
    .venv/bin/python benchmarks/vs_go.py --quick            # seconds-long smoke run
    .venv/bin/python benchmarks/vs_go.py --json out.json --rounds 5 --cycles 300

Needs the harness binaries (scripts/build-harness.sh) and Go (scripts/build-go-driver.sh, run
by this script). The load average is recorded with every round: the figures are only as good
as the machine was quiet.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_go_sides import (BenchSide, GoSide, PySide, claims_for, ensure_node, loadavg, pct,  # noqa: E402
                         publish_python, setup_objects)

REPO = Path(__file__).resolve().parent.parent
SIDES = ("python", "go")


def build_go() -> Path:
    out = subprocess.run([str(REPO / "scripts/build-go-driver.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


class Run:
    """Figures per round and side; ``add(name, round, side, value)``."""

    def __init__(self) -> None:
        self.data: dict[str, dict[int, dict[str, float]]] = {}
        self.better: dict[str, str] = {}
        self.load: list[str] = []

    def add(self, name: str, rnd: int, side: str, value: float, better: str = "lower") -> None:
        self.data.setdefault(name, {}).setdefault(rnd, {})[side] = value
        self.better[name] = better

    def table(self) -> list[dict]:
        rows = []
        for name, rounds in self.data.items():
            py = [v["python"] for v in rounds.values() if "python" in v]
            go = [v["go"] for v in rounds.values() if "go" in v]
            ratios = [v["python"] / v["go"] for v in rounds.values() if v.get("go") and "python" in v]
            rows.append({"figure": name, "python": statistics.median(py) if py else None,
                         "go": statistics.median(go) if go else None,
                         "ratio": statistics.median(ratios) if ratios else None,
                         "ratios": [round(r, 2) for r in ratios]})
        return rows


def client(bins: Path, *args: str, timeout: float = 600) -> dict:
    r = subprocess.run([str(bins / "dra-bench-client"), *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"dra-bench-client {args}: {r.stderr.strip()[-2000:]}")
    out = json.loads(r.stdout)
    if out["errors"]:
        raise RuntimeError(f"dra-bench-client {args}: {out['errors'][:3]}")
    return out


def ms(ns: list[int], p: float) -> float:
    return pct(ns, p) / 1e6


def measure_round(run: Run, rnd: int, side: BenchSide, storage: str, args: argparse.Namespace, bins: Path) -> None:
    tag = f", {storage}"
    sock, claims = str(side.dra_socket), str(side.claims_file)
    out = client(bins, "-mode", "cycle", "-socket", sock, "-claims", claims, "-n", str(args.cycles))
    side.cycles += args.cycles
    run.add(f"prepare p50 ms{tag}", rnd, side.name, ms(out["prepare_ns"], 50))
    run.add(f"prepare p99 ms{tag}", rnd, side.name, ms(out["prepare_ns"], 99))
    run.add(f"unprepare p50 ms{tag}", rnd, side.name, ms(out["unprepare_ns"], 50))
    run.add(f"unprepare p99 ms{tag}", rnd, side.name, ms(out["unprepare_ns"], 99))
    # CPU of the driver process (all threads) around sequential prepares, then unprepares.
    cpu_p = cpu_u = 0.0
    n = 0
    for _ in range(args.cpu_passes):
        c0 = side.cpu_seconds()
        client(bins, "-mode", "prepare", "-socket", sock, "-claims", claims)
        c1 = side.cpu_seconds()
        client(bins, "-mode", "unprepare", "-socket", sock, "-claims", claims)
        c2 = side.cpu_seconds()
        cpu_p, cpu_u, n = cpu_p + c1 - c0, cpu_u + c2 - c1, n + len(side.claims)
        side.cycles += len(side.claims)
    run.add(f"CPU s per 1000 prepares{tag}", rnd, side.name, cpu_p / n * 1000)
    run.add(f"CPU s per 1000 unprepares{tag}", rnd, side.name, cpu_u / n * 1000)
    for callers in (1, 32):
        out = client(bins, "-mode", "storm", "-socket", sock, "-claims", claims, "-n", str(args.storm_rounds),
                     "-c", str(callers))
        side.cycles += args.storm_rounds * len(side.claims)
        claims_s = len(out["prepare_ns"]) / (sum(out["prepare_wall_ns"]) / 1e9)
        run.add(f"prepare claims/s, {callers} caller(s){tag}", rnd, side.name, claims_s, better="higher")
    if storage == "tmpfs":
        out = client(bins, "-mode", "empty", "-socket", sock, "-n", str(args.empty_calls))
        run.add("empty RPC p50 ms (unprepare of an unknown UID)", rnd, side.name, ms(out["unprepare_ns"], 50))


def order(rnd: int) -> tuple[str, str]:
    return SIDES if rnd % 2 == 0 else SIDES[::-1]


async def main_async(args: argparse.Namespace) -> dict:
    from dra_framework.testing import k8s

    bins = k8s.find_bins(k8s.k8s_version())
    gobins = build_go()
    work = Path(tempfile.mkdtemp(prefix="vs-go-", dir=args.disk_dir))
    shm = Path(tempfile.mkdtemp(prefix="vs-go-", dir=args.tmpfs_dir))
    cp = k8s.ControlPlane(bins, work / "cp", k8s.k8s_version())
    cp.start()
    run = Run()
    meta = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "k8s": k8s.k8s_version(),
            "args": vars(args), "loadavg_start": loadavg()}
    client_ = cp.client()
    try:
        setup_objects(client_)
        for storage, base in (("tmpfs", shm), ("disk", work)):
            if storage not in args.storage:
                continue
            py = PySide(base / "py", cp, f"py-{storage}", args.count)
            py.start()
            slices = py.wait_slices(client_)
            go = GoSide(base / "go", cp, f"go-{storage}", gobins, slices)
            go.start()
            go.wait_slices(client_)
            sides = {"python": py, "go": go}
            try:
                for s in sides.values():
                    claims_for(client_, s, args.claims)
                    client(gobins, "-mode", "cycle", "-socket", str(s.dra_socket), "-claims", str(s.claims_file),
                           "-n", str(args.claims))  # warm-up; also checks every claim prepares
                for rnd in range(args.rounds):
                    for name in order(rnd):
                        measure_round(run, rnd, sides[name], storage, args, gobins)
                    run.load.append(f"{storage} round {rnd}: {loadavg()}")
                    print(f"# {run.load[-1]}", file=sys.stderr, flush=True)
                if storage == "tmpfs":
                    for name in SIDES:  # RSS after (at least) 1,000 cycles, then its trend
                        s = sides[name]
                        while s.cycles < 1000:
                            client(gobins, "-mode", "cycle", "-socket", str(s.dra_socket), "-claims",
                                   str(s.claims_file), "-n", "100")
                            s.cycles += 100
                        rss = [s.rss_mib()]
                        for _ in range(args.rss_thousands):
                            client(gobins, "-mode", "cycle", "-socket", str(s.dra_socket), "-claims",
                                   str(s.claims_file), "-n", "1000", timeout=1800)
                            s.cycles += 1000
                            rss.append(s.rss_mib())
                        run.add("RSS MiB after 1,000 cycles", 0, name, rss[0])
                        if args.rss_thousands:
                            run.add(f"RSS MiB after {s.cycles} cycles", 0, name, rss[-1])
                        meta[f"rss_trend_{name}"] = rss
            finally:
                for s in sides.values():
                    s.stop()
        if "startup" in args.parts:
            for rnd in range(args.rounds):
                for name in order(rnd):
                    side = (PySide if name == "python" else GoSide)(shm / f"start-{name}-{rnd}", cp,
                                                                  f"start-{name}", *((args.count,) if name == "python"
                                                                                      else (gobins, None)))
                    out = client(gobins, "-mode", "startup", "-reg", str(side.reg_socket), "-n", "1", "--",
                                 *side.command())
                    run.add("process start to GetInfo answered, ms", rnd, name, out["startup_ns"][0] / 1e6)
            run.load.append(f"startup: {loadavg()}")
        if "publish" in args.parts:
            go_slices = shm / "publish-slices.json"
            for rnd in range(args.rounds):
                for name in order(rnd):
                    if name == "python":
                        t, dumped = await publish_python(cp, "pub-py", args.publish_devices, rnd)
                        if not go_slices.exists():
                            go_slices.write_text(json.dumps(dumped))
                    else:
                        if not go_slices.exists():
                            continue
                        ensure_node(client_, "pub-go")
                        r = subprocess.run([str(gobins / "go-dra-driver"), "-kubeconfig", str(cp.kubeconfig),
                                            "-node-name", "pub-go", "-driver-name", "pub-go.bench.example.com",
                                            "-slices", str(go_slices), "-publish-bench", "1"],
                                           capture_output=True, text=True, timeout=300)
                        if r.returncode != 0:
                            raise RuntimeError(f"go-dra-driver -publish-bench: {r.stderr[-2000:]}")
                        t = json.loads(r.stdout)["publish_ns"][0] / 1e9
                    run.add(f"ResourceSlice publish of a {args.publish_devices}-device pool, ms", rnd, name, t * 1e3)
            run.load.append(f"publish: {loadavg()}")
    finally:
        cp.stop()
    meta["loadavg_end"] = loadavg()
    return {"meta": meta, "load": run.load, "figures": run.table()}


def render(result: dict) -> str:
    lines = [f"# {result['meta']['k8s']}, {result['meta']['cpus']} CPUs, load start {result['meta']['loadavg_start']}"
             f", end {result['meta']['loadavg_end']}", *[f"# {x}" for x in result["load"]], "",
             "| figure | Python | Go | Python/Go (median) | per round |", "|---|---|---|---|---|"]
    for r in result["figures"]:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3g}" if v < 100 else f"{v:.0f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        lines.append(f"| {r['figure']} | {f(r['python'])} | {f(r['go'])} | {ratio} | "
                     f"{' '.join(str(x) for x in r['ratios'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=300, help="prepare+unprepare cycles per round for latency")
    ap.add_argument("--claims", type=int, default=32, help="claims per driver")
    ap.add_argument("--count", type=int, default=64, help="example backend accelerators")
    ap.add_argument("--cpu-passes", type=int, default=4, help="passes over all claims per round for CPU")
    ap.add_argument("--storm-rounds", type=int, default=4)
    ap.add_argument("--empty-calls", type=int, default=500)
    ap.add_argument("--rss-thousands", type=int, default=10, help="thousands of cycles for the RSS trend")
    ap.add_argument("--publish-devices", type=int, default=300)
    ap.add_argument("--storage", default="tmpfs,disk", type=lambda s: s.split(","))
    ap.add_argument("--parts", default="startup,publish", type=lambda s: s.split(","))
    ap.add_argument("--tmpfs-dir", default="/dev/shm")
    ap.add_argument("--disk-dir", default=None, help="a directory on disk (default: the temp dir)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, tiny counts, tmpfs only")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.cycles, args.claims, args.cpu_passes, args.storm_rounds = 1, 10, 4, 1, 1
        args.empty_calls, args.rss_thousands, args.publish_devices, args.storage = 20, 0, 30, ["tmpfs"]
    result = asyncio.run(main_async(args))
    text = render(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

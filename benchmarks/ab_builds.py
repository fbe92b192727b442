"""Two builds of dra-framework side by side against one kube-apiserver, alternating rounds: the
A/B comparison behind benchmarks/README.md "What was optimised".

usage: .venv/bin/python benchmarks/ab_builds.py A_VENV_BIN B_VENV_BIN
       (environment: ROUNDS=4 CYCLES=300 STORAGE=tmpfs|disk)

Each build runs `dra-framework run` with the example backend (count 64) on its own Node with 32
allocated claims, driven by dra-bench-client (benchmarks/go-driver) as in vs_go.py. Prints the
median of each figure, B/A, and every round's value. Make the second build with, for example,
`git worktree add /tmp/a <commit> && make -C /tmp/a setup`, and pass /tmp/a/.venv/bin.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_go import build_go  # noqa: E402
from vs_go_sides import PySide, claims_for, setup_objects  # noqa: E402

from dra_framework.testing import k8s  # noqa: E402


class Build(PySide):
    def __init__(self, root: Path, cp: object, node: str, bindir: str) -> None:
        super().__init__(root, cp, node, 64)
        self.bindir = bindir

    def command(self) -> list[str]:
        return [os.path.join(self.bindir, "dra-framework"), "run", "--config", str(self.config)]


def median_ms(ns: list[int], p: float) -> float:
    xs = sorted(ns)
    return xs[min(len(xs) - 1, int(len(xs) * p))] / 1e6


def main() -> int:
    builds = {"A": sys.argv[1], "B": sys.argv[2]}
    rounds, cycles = int(os.environ.get("ROUNDS", "4")), os.environ.get("CYCLES", "300")
    work = Path(tempfile.mkdtemp(prefix="ab-"))
    base = Path(tempfile.mkdtemp(prefix="ab-", dir="/dev/shm")) if os.environ.get("STORAGE", "tmpfs") == "tmpfs" else work
    cp = k8s.ControlPlane(k8s.find_bins(k8s.k8s_version()), work / "cp", k8s.k8s_version())
    cp.start()
    bench = str(build_go() / "dra-bench-client")

    def run(*args: str) -> dict:
        return json.loads(subprocess.run([bench, *args], capture_output=True, text=True, check=True).stdout)

    sides: dict[str, Build] = {}
    res: dict[str, dict[str, list[float]]] = {t: {} for t in builds}
    try:
        client = cp.client()
        setup_objects(client)
        for tag, bindir in builds.items():
            s = Build(base / tag, cp, f"py-{tag.lower()}", bindir)
            s.start()
            s.wait_slices(client)
            claims_for(client, s, 32)
            sides[tag] = s
            run("-mode", "cycle", "-socket", str(s.dra_socket), "-claims", str(s.claims_file), "-n", "100")
        for rnd in range(rounds):
            for tag in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                s, add = sides[tag], res[tag].setdefault
                sock, claims = str(s.dra_socket), str(s.claims_file)
                out = run("-mode", "cycle", "-socket", sock, "-claims", claims, "-n", cycles)
                add("prepare p50 ms", []).append(median_ms(out["prepare_ns"], 0.5))
                add("prepare p99 ms", []).append(median_ms(out["prepare_ns"], 0.99))
                add("unprepare p50 ms", []).append(median_ms(out["unprepare_ns"], 0.5))
                c0 = s.cpu_seconds()
                run("-mode", "prepare", "-socket", sock, "-claims", claims)
                c1 = s.cpu_seconds()
                run("-mode", "unprepare", "-socket", sock, "-claims", claims)
                c2 = s.cpu_seconds()
                add("CPU ms/prepare", []).append((c1 - c0) / len(s.claims) * 1000)
                add("CPU ms/unprepare", []).append((c2 - c1) / len(s.claims) * 1000)
                out = run("-mode", "empty", "-socket", sock, "-n", "1000")
                add("empty RPC p50 ms", []).append(median_ms(out["unprepare_ns"], 0.5))
                for callers in (1, 32):
                    out = run("-mode", "storm", "-socket", sock, "-claims", claims, "-n", "3", "-c", str(callers))
                    add(f"claims/s, {callers} caller(s)", []).append(len(out["prepare_ns"]) / (sum(out["prepare_wall_ns"]) / 1e9))
                add("RSS MiB", []).append(s.rss_mib())
        print("load average", Path("/proc/loadavg").read_text().split()[:3])
        for k in res["A"]:
            a, b = statistics.median(res["A"][k]), statistics.median(res["B"][k])
            rounds_a = " ".join(f"{x:.2f}" for x in res["A"][k])
            rounds_b = " ".join(f"{x:.2f}" for x in res["B"][k])
            print(f"{k:22s} A {a:8.3f}  B {b:8.3f}  B/A {b / a:5.2f}   A: {rounds_a}   B: {rounds_b}")
    finally:
        for s in sides.values():
            s.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

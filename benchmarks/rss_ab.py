"""Resident memory of `dra-framework run` (example backend, count 64) after 1,000 prepare +
unprepare cycles, for one or more builds side by side against one kube-apiserver.

usage: .venv/bin/python benchmarks/rss_ab.py [--runs 3] [--cycles 1000] [--more-thousands N]
           TAG=BINDIR[,VAR=VALUE...] ...

Each run starts every build afresh (alternating order), as benchmarks/vs_go.py drives it: 32
claims, one 32-caller and one 1-caller storm, then cycles until ``--cycles``. It then reads the
daemon's ``VmRSS`` and ``/proc/PID/smaps_rollup`` (anonymous and file-backed parts). Prints, per
build, the median and every run's value. ``BINDIR`` holds the build's ``dra-framework`` (a venv's
``bin``); ``VAR=VALUE`` pairs go into that daemon's environment (e.g. ``MALLOC_ARENA_MAX=1``).
Make a second build with ``git worktree add /tmp/a <commit> && make -C /tmp/a setup``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_go import build_go  # noqa: E402
from vs_go_sides import PySide, claims_for, loadavg, setup_objects  # noqa: E402

from dra_framework.testing import k8s  # noqa: E402


class Build(PySide):
    def __init__(self, root: Path, cp: object, node: str, bindir: str, env: dict[str, str]) -> None:
        super().__init__(root, cp, node, 64)
        self.bindir, self.env = bindir, env

    def command(self) -> list[str]:
        return [os.path.join(self.bindir, "dra-framework"), "run", "--config", str(self.config)]

    def start(self) -> None:
        old = dict(os.environ)
        os.environ.update(self.env)  # PySide.start uses Popen's default (inherited) environment
        try:
            super().start()
        finally:
            os.environ.clear()
            os.environ.update(old)

    def memory(self) -> dict[str, float]:
        """VmRSS and the smaps_rollup split in MiB."""
        out = {"VmRSS": self.rss_mib()}
        for line in Path(f"/proc/{self.proc.pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            if key in ("Anonymous", "Rss") and rest.split():
                out[key] = int(rest.split()[0]) / 1024
        out["file-backed"] = out.get("Rss", 0) - out.get("Anonymous", 0)
        out["threads"] = len(os.listdir(f"/proc/{self.proc.pid}/task"))
        return out


def parse_build(spec: str) -> tuple[str, str, dict[str, str]]:
    tag, _, rest = spec.partition("=")
    bindir, *pairs = rest.split(",")
    return tag, bindir, dict(p.split("=", 1) for p in pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", help="TAG=BINDIR[,VAR=VALUE...]")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--more-thousands", type=int, default=0,
                    help="then this many more thousands of cycles, VmRSS after each (the trend)")
    ap.add_argument("--json", help="also write every run's figures here")
    args = ap.parse_args()
    builds = [parse_build(b) for b in args.builds]
    work = Path(tempfile.mkdtemp(prefix="rss-ab-"))
    shm = Path(tempfile.mkdtemp(prefix="rss-ab-", dir="/dev/shm"))
    cp = k8s.ControlPlane(k8s.find_bins(k8s.k8s_version()), work / "cp", k8s.k8s_version())
    cp.start()
    bench = str(build_go() / "dra-bench-client")

    def drive(s: Build, *a: str) -> None:
        subprocess.run([bench, *a, "-socket", str(s.dra_socket), "-claims", str(s.claims_file)],
                       capture_output=True, text=True, check=True)

    res: dict[str, list[dict[str, float]]] = {tag: [] for tag, _, _ in builds}
    print("load average at start", loadavg(), flush=True)
    try:
        client = cp.client()
        setup_objects(client)
        for run in range(args.runs):
            order = builds if run % 2 == 0 else builds[::-1]
            for tag, bindir, env in order:
                s = Build(shm / f"{tag}-{run}", cp, f"rss-{tag.lower().replace('_', '-')}-{run}", bindir, env)
                s.start()
                try:
                    s.wait_slices(client)
                    claims_for(client, s, 32)
                    drive(s, "-mode", "cycle", "-n", "32")
                    for callers in ("32", "1"):
                        drive(s, "-mode", "storm", "-n", "4", "-c", callers)
                    drive(s, "-mode", "cycle", "-n", str(max(0, args.cycles - 32 * 9)))
                    m = s.memory()
                    for k in range(args.more_thousands):
                        drive(s, "-mode", "cycle", "-n", "1000")
                        m[f"VmRSS +{k + 1}k"] = s.rss_mib()
                finally:
                    s.stop()
                res[tag].append(m)
                print(f"run {run} {tag}: " + " ".join(f"{k} {v:.1f}" for k, v in m.items()) + f"  load {loadavg()}",
                      flush=True)
        print("load average at end", loadavg())
        for tag, runs in res.items():
            for key in runs[0]:
                vals = [r[key] for r in runs]
                print(f"{tag:10s} {key:12s} median {statistics.median(vals):6.1f}   runs: "
                      + " ".join(f"{v:.1f}" for v in vals))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""kill -9 loop over the example and NVIDIA backends through the real daemon (see
tests/e2e/kill_loop.py for what one cycle does and checks).

Starts its own etcd + kube-apiserver from the harness cache, then runs ``--rounds`` rounds; each
round kills at every kill point of one example claim (two half partitions and a whole card) and
one NVIDIA claim (two 1g MIG instances and a full GPU), once with the kubelet retrying the prepare
and once with the pod deleted (unprepare only). Prints one line per kill and a summary; exits 1
if anything leaked.

usage: .venv/bin/python benchmarks/kill_loop.py [--rounds 3] [--dir DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from kill_loop import EXAMPLE, NVIDIA, KillLoop  # noqa: E402

from dra_framework.testing.k8s import ControlPlane, find_bins, k8s_version  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="kill-loop-"))
    t0 = time.monotonic()
    cp = ControlPlane(find_bins(), work / "apiserver", k8s_version()).start()
    loop = None
    try:
        loop = KillLoop(cp.kubeconfig, cp.client(), work / "node")
        loop.start()
        migs, gpu = loop.nvidia_devices()
        per_scenario = []
        for r in range(args.rounds):
            acc = r % 2
            ex = loop.make_claim(EXAMPLE, f"ex-{r}", [f"acc-{acc}-half-0", f"acc-{acc}-half-1", f"acc-{1 - acc}"])
            nv = loop.make_claim(NVIDIA, f"nv-{r}", [*migs, gpu])
            for claim in (nv, ex):
                for mode in ("retry", "delete"):
                    n = loop.run_scenario(claim, mode)
                    per_scenario.append((claim["driver"], mode, n))
    finally:
        if loop is not None:
            loop.stop()
        cp.stop()
    st = loop.stats
    wall = time.monotonic() - t0
    print(f"\nkills: {st.kills} ({', '.join(f'{d}: {n}' for d, n in st.by_driver.items())}), "
          f"distinct kill points: {len(st.points)}, leaks: {len(st.leaks)}")
    print(f"cycle (kill, restart, checks, recovery): median {statistics.median(st.cycle_seconds):.2f} s, "
          f"max {max(st.cycle_seconds):.2f} s; total wall time {wall:.0f} s")
    for leak in st.leaks:
        print("LEAK:", leak)
    if args.json:
        args.json.write_text(json.dumps({"kills": st.kills, "by_driver": st.by_driver, "points": st.points,
                                         "leaks": st.leaks, "scenarios": per_scenario, "wall_seconds": wall,
                                         "cycle_median_seconds": statistics.median(st.cycle_seconds)}, indent=1))
    return 1 if st.leaks else 0


if __name__ == "__main__":
    sys.exit(main())

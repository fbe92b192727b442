"""kill -9 at every kill point (docs/testing.md, "Kill points") of a sample of claims, then a
restart and the kubelet's next call: nothing may be left behind (checkpoint entries, CDI
specs, backend state)."""
from __future__ import annotations

import grpc
import pytest

from ...killpoints import KILL_AT

pytestmark = pytest.mark.k8s

CLAIMS = 2  # of the warm-up claims, the ones with the most kill points get killed


def sample(n: int, k: int) -> list[int]:
    """``k`` points of ``1..n`` spread evenly, first and last included (all when k is 0 or >= n)."""
    if k <= 0 or k >= n:
        return list(range(1, n + 1))
    if k == 1:
        return [n]
    return sorted({round(1 + i * (n - 1) / (k - 1)) for i in range(k)})


def test_kill9_at_kill_points_then_restart_leaves_nothing_behind(conformance_subject, allocator, pytestconfig):
    s, drv = conformance_subject, conformance_subject.proc

    def claim(name: str, pin: str):
        s.claim(name, [pin])
        s.allocate(name, allocator)
        return s.ref(s.harness.objects.get("ResourceClaim", name, "dra-conformance"))

    # The warm-up counted the kill points of a few claims (one prepare, one unprepare each).
    points = s.points
    chosen = sorted(points, key=lambda p: -len(points[p]))[:CLAIMS]

    failures = []
    for pin in chosen:
        ref, names = claim(f"crash-{pin}", pin), points[pin]
        for n, k in enumerate(sample(len(names), pytestconfig.getoption("dra_kill_sample"))):
            where = f"claim on {s.pins[pin]}, kill point {k}/{len(names)} ({names[k - 1]})"
            s.restart({KILL_AT: str(k)})
            try:
                outcome = drv.prepare([ref])[ref.uid]
                assert not outcome.error, f"{where}: prepare before the kill failed: {outcome.error}"
                drv.unprepare([ref])
            except grpc.RpcError:
                pass  # the daemon died under the call, as meant
            rc = drv.wait_exit(60)
            assert rc == -9, f"{where}: the daemon did not die there (exit {rc}); the points are not deterministic"
            s.restart()
            # What the kubelet does next: retry the prepare (then unprepare), or unprepare.
            if n % 2 == 0:
                outcome = drv.prepare([ref])[ref.uid]
                if outcome.error:
                    failures.append(f"{where}: prepare after the restart failed: {outcome.error}")
            errors = drv.unprepare([ref])
            if errors != {ref.uid: ""}:
                failures.append(f"{where}: unprepare after the restart failed: {errors}")
            try:
                s.assert_clean(where)
            except AssertionError as e:
                failures.append(str(e))
        s.delete_claim(ref.name)
    assert not failures, "\n".join(failures)

"""kill -9 at every kill point of a claim's prepare and unprepare, through the real daemon.

One ``dra-framework run`` process serves two drivers on one node: ``example.dra.dev`` (the
example backend: partition marker files) and ``gpu.nvidia.com`` (the NVIDIA backend on the
sample DGX H100 host, fake NVML, dynamic MIG, ``unownedMigPolicy: refuse`` so that a leaked MIG
instance stays visible). Claims live in a real kube-apiserver; the loop calls
NodePrepareResources / NodeUnprepareResources on the DRA socket like the kubelet.

A cycle, for kill point k of a scenario (claim) and recovery mode:

1. arm the daemon (tests/e2e/killloop/sitecustomize.py) to SIGKILL itself at the k-th kill point;
2. prepare, then unprepare the claim; the daemon dies at point k (when the operation has fewer
   points the scenario is done);
3. start the daemon again (normal start-up: reconcile, temp-file clean-up) and check that the
   node's state *agrees*: every CDI claim spec, partition marker and MIG instance is owned by a
   checkpoint entry, and no temp file is left;
4. recover like the kubelet: ``retry`` prepares again then unprepares (the pod still runs),
   ``delete`` only unprepares (the pod went away); both must succeed;
5. check that *nothing* is left: no checkpoint entry, CDI claim spec, marker, MIG instance or
   temp file.

The restarted daemon is the next cycle's victim, so a cycle costs one daemon start.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "examples" / "hosts" / "dgx-h100"
SITE = Path(__file__).resolve().parent / "killloop"
EXAMPLE, NVIDIA = "example.dra.dev", "gpu.nvidia.com"
NODE = "kill-loop-node"


def config(mig_policy: str = "refuse") -> dict[str, Any]:
    return {"janitorIntervalSeconds": 3600, "drivers": [
        {"name": EXAMPLE, "backends": [{"name": "example", "options": {"count": 2}}]},
        {"name": NVIDIA, "backends": [{"name": "nvidia", "options": {
            "nvml": "fake", "hostRoot": str(HOST), "driverRoot": str(HOST), "hostDriverRoot": "/",
            "migStrategy": "dynamic", "executor": "record", "unownedMigPolicy": mig_policy,
            "healthCheck": False}}]}]}


@dataclass
class Stats:
    kills: int = 0
    by_driver: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)  # kill point name → kills there
    leaks: list[str] = field(default_factory=list)
    cycle_seconds: list[float] = field(default_factory=list)


class KillLoop:
    """``kubeconfig``: of a running kube-apiserver; ``workdir``: an empty directory;
    ``client``: a lightkube Client for it."""

    def __init__(self, kubeconfig: Path, client: Any, workdir: Path, log: Callable[[str], None] = print,
                 mig_policy: str = "refuse") -> None:
        from dra_framework.testing import DriverProcess

        self.client, self.workdir, self.log = client, Path(workdir), log
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.arm_file = self.workdir / "arm"
        self.arm_file.write_text("0 0")
        for d in ("plugins_registry", "plugins"):  # what the kubelet creates
            (self.workdir / "kubelet" / d).mkdir(parents=True, exist_ok=True)
        self.gen = 0
        env = {"DRA_KILL_ARM": str(self.arm_file),
               "PYTHONPATH": os.pathsep.join([str(SITE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        self.daemon = DriverProcess(config(mig_policy), workdir=self.workdir, node_name=NODE,
                                    kubelet_root=self.workdir / "kubelet", kubeconfig=kubeconfig,
                                    env=env, ports=False)
        self.stats = Stats()
        self.claims: dict[str, dict[str, Any]] = {}

    # --- set-up ----------------------------------------------------------------------------

    def start(self) -> None:
        from lightkube import ApiError, codecs

        try:  # node-local ResourceSlices are owned by the Node object
            self.client.create(codecs.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
        self.daemon.start().wait_running(120)
        self.mig_baseline = self.mig_modes()  # before any claim: the sample host's own MIG modes

    def stop(self) -> None:
        self.daemon.stop()

    def make_claim(self, driver: str, name: str, devices: list[str]) -> dict[str, Any]:
        """A ResourceClaim allocated to ``devices`` of ``driver`` on this node (status written
        as the scheduler would)."""
        from lightkube import codecs
        from lightkube.types import PatchType

        obj = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"devices": {"requests": [
                   {"name": f"r{i}", "exactly": {"deviceClassName": "kill-loop", "allocationMode": "ExactCount",
                                                 "count": 1}} for i in range(len(devices))]}}}
        res = codecs.from_dict(obj)
        created = self.client.create(res)
        status = {"allocation": {"devices": {"results": [
            {"request": f"r{i}", "driver": driver, "pool": NODE, "device": d} for i, d in enumerate(devices)]},
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}}}
        self.client.patch(type(res).Status, name, {"status": status}, namespace="default",
                          patch_type=PatchType.MERGE)
        claim = {"uid": created.metadata.uid, "name": name, "driver": driver, "devices": devices}
        self.claims[name] = claim
        return claim

    def nvidia_devices(self) -> tuple[list[str], str]:
        """Two 1g MIG placements on the first GPU and a full second GPU, from the slices."""
        from lightkube.resources.resource_v1 import ResourceSlice as rs

        from dra_framework.testing.k8s import wait_for

        def names() -> list[str]:
            out = []
            for s in self.client.list(rs, fields={"spec.driver": NVIDIA}):
                d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
                if d["spec"].get("nodeName") == NODE:
                    out += [dev["name"] for dev in d["spec"].get("devices", [])]
            return sorted(out)
        all_names = wait_for(names, 60, "NVIDIA ResourceSlices")
        gpus = [n for n in all_names if re.fullmatch(r"gpu-[0-9a-f]{4}-[0-9a-f]{2}-[0-9a-f]{2}-[0-7]", n)]
        one_g = [n for n in all_names if re.fullmatch(re.escape(gpus[0]) + r"-mig-1g[0-9]+gb-[0-9]+-[0-9]+", n)]
        pid = min(int(n.rsplit("-", 2)[1]) for n in one_g)  # the plain 1g profile, not "+me"
        migs = sorted((n for n in one_g if int(n.rsplit("-", 2)[1]) == pid), key=lambda n: int(n.rsplit("-", 1)[1]))
        return migs[:2], gpus[1]  # placements 0 and 1 do not overlap

    # --- state -------------------------------------------------------------------------------

    def checkpoint(self, driver: str) -> dict[str, dict[str, Any]]:
        return self.daemon.checkpoint(driver)

    def markers(self) -> list[str]:
        d = self.daemon.state_dir / EXAMPLE / "example" / "partitions"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def _nvml(self) -> dict[str, Any]:
        p = self.daemon.state_dir / NVIDIA / "nvidia" / "fake-nvml" / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def gpu_instances(self) -> list[tuple[str, int, int]]:
        return sorted((u, int(gi["profileId"]), int(gi["start"])) for u, g in self._nvml().items()
                      for gi in g["gis"].values())

    def mig_modes(self) -> dict[str, bool]:
        """GPU uuid → MIG mode on (only GPUs whose state the fake NVML has saved)."""
        return {u: bool(g.get("mig")) for u, g in self._nvml().items()}

    def temp_files(self) -> list[str]:
        roots = [self.daemon.state_dir, self.daemon.cdi_dir, self.daemon.kubelet_root / "plugins"]
        return sorted(str(p) for r in roots if r.exists() for p in r.rglob(".*.tmp"))

    def claim_specs(self) -> list[str]:
        return sorted(p.name for p in self.daemon.cdi_specs() if not p.name.endswith("_common.json"))

    def agreement_problems(self) -> list[str]:
        """What is on the node but owned by no checkpoint entry (after a restart)."""
        problems = []
        cps = {EXAMPLE: self.checkpoint(EXAMPLE), NVIDIA: self.checkpoint(NVIDIA)}
        uids = {u for c in cps.values() for u in c}
        for spec in self.claim_specs():
            if not any(u in spec for u in uids):
                problems.append(f"CDI spec {spec} without a checkpoint entry")
        owned_devices = {p.get("device") for e in cps[EXAMPLE].values() for p in e.get("partitions", [])}
        for m in self.markers():
            if m not in owned_devices:
                problems.append(f"partition marker {m} owned by no checkpoint entry")
        owned_places = set()
        for e in cps[NVIDIA].values():
            for p in e.get("partitions", []):
                recs = [p.get("record") or {}, *(p.get("journal") or {}).values()]
                owned_places |= {(r.get("parent"), r.get("profileId"), r.get("start")) for r in recs
                                 if isinstance(r, dict)}
            for k, r in ((e.get("journal") or {}).get("nvidia") or {}).items():
                if k.startswith("mig/") and isinstance(r, dict):
                    owned_places.add((r.get("parent"), r.get("profileId"), r.get("start")))
        for gi in self.gpu_instances():
            if gi not in owned_places:
                problems.append(f"MIG instance {gi} owned by no checkpoint entry")
        problems += [f"temp file {t}" for t in self.temp_files()]
        return problems

    def leftovers(self) -> list[str]:
        out = [f"checkpoint entry {u} ({d})" for d in (EXAMPLE, NVIDIA) for u in self.checkpoint(d)]
        out += [f"CDI spec {s}" for s in self.claim_specs()]
        out += [f"partition marker {m}" for m in self.markers()]
        out += [f"MIG instance {gi}" for gi in self.gpu_instances()]
        out += [f"MIG mode of {u} left {'on' if on else 'off'}" for u, on in self.mig_modes().items()
                if on != self.mig_baseline.get(u, False)]
        out += [f"temp file {t}" for t in self.temp_files()]
        return out

    # --- one cycle ---------------------------------------------------------------------------

    def _arm(self, n: int) -> str:
        self.gen += 1
        self.arm_file.write_text(f"{self.gen} {n}")
        return str(self.gen)

    def _died_at(self, gen: str) -> str:
        lines = [ln.split("\t") for ln in Path(str(self.arm_file) + ".log").read_text().splitlines()]
        mine = [ln[2] for ln in lines if ln[0] == gen]
        return mine[-1] if mine else "?"

    def _call(self, what: str, claim: dict[str, Any]) -> str | None:
        """prepare/unprepare; returns the claim's error, or None when the daemon died meanwhile."""
        import grpc

        ref = [(claim["uid"], "default", claim["name"])]
        try:
            if what == "prepare":
                return self.daemon.prepare(ref, driver=claim["driver"])[claim["uid"]].error
            return self.daemon.unprepare(ref, driver=claim["driver"])[claim["uid"]]
        except grpc.RpcError:
            if self.daemon.proc is not None:
                try:
                    self.daemon.proc.wait(10)
                except Exception:  # noqa: BLE001 - still running: a real gRPC error
                    raise
            return None

    def cycle(self, claim: dict[str, Any], k: int, mode: str) -> bool:
        """Kill at point k of prepare+unprepare of ``claim``, restart, check, recover, check.
        Returns False when the operations had fewer than k points (no kill happened)."""
        t0 = time.monotonic()
        gen = self._arm(k)
        died = False
        for op in ("prepare", "unprepare"):
            err = self._call(op, claim)
            if err is None:
                died = True
                break
            if err:
                raise AssertionError(f"{op} of {claim['name']} failed without a kill: {err}\n{self.daemon.tail()}")
        if not died:
            self._arm(0)
            if self.leftovers():
                raise AssertionError(f"a clean prepare+unprepare left {self.leftovers()}")
            return False
        rc = self.daemon.wait_exit(30)
        assert rc == -9, f"daemon exited with {rc}, not by SIGKILL:\n{self.daemon.tail()}"
        where = self._died_at(gen)
        self._arm(0)
        self.daemon.start().wait_running(120)
        problems = self.agreement_problems()
        if mode == "retry":
            err = self._call("prepare", claim)
            assert err == "", f"retry prepare after a kill at {where!r}: {err}\n{self.daemon.tail()}"
        err = self._call("unprepare", claim)
        assert err == "", f"unprepare after a kill at {where!r}: {err}\n{self.daemon.tail()}"
        left = self.leftovers()
        st = self.stats
        st.kills += 1
        st.by_driver[claim["driver"]] = st.by_driver.get(claim["driver"], 0) + 1
        point = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uid>", where)
        st.points[point] = st.points.get(point, 0) + 1
        st.leaks += [f"kill at {where!r} ({mode}), after restart: {p}" for p in problems]
        st.leaks += [f"kill at {where!r} ({mode}), after recovery: {p}" for p in left]
        st.cycle_seconds.append(time.monotonic() - t0)
        self.log(f"kill {st.kills:3d} {claim['driver']:15s} k={k:2d} {mode:6s} at {where:60s} "
                 f"{'LEAK ' + '; '.join(problems + left) if problems or left else 'clean'}")
        return True

    def run_scenario(self, claim: dict[str, Any], mode: str, step: int = 1, start: int = 1) -> int:
        """Cycles for k = start, start+step, ... until no kill happens. Returns the kills."""
        n, k = 0, start
        while self.cycle(claim, k, mode):
            n += 1
            k += step
        return n

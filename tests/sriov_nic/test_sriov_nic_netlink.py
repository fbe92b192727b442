"""The real rtnetlink implementation (pyroute2) against the kernel, in a private network
namespace (``unshare -n``, where only ``lo`` exists and may be changed): MTU read and set, and a missing link or VF
reported as LinkGone (what unprepare treats as "nothing to restore")."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    from dra_backends.sriov_nic.netlink import LinkGone, Pyroute2Netlink
    nl = Pyroute2Netlink()
    assert nl.mtu("lo") == 65536, nl.mtu("lo")
    nl.set_mtu("lo", 9000)
    assert nl.mtu("lo") == 9000
    for call in (lambda: nl.vf_state("lo", 0), lambda: nl.vf_state("nosuch0", 0),
                 lambda: nl.set_vf("nosuch0", 0, {"vlan": 5}), lambda: nl.mtu("nosuch0")):
        try:
            call()
        except LinkGone as exc:
            print("gone:", exc)
        else:
            raise SystemExit("LinkGone expected")
    print("ok")
""")


def test_pyroute2_netlink_in_a_private_netns():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "unshare failed" in r.stderr:
        pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("gone:") == 4 and r.stdout.strip().endswith("ok"), r.stdout

"""Fixtures: a short kubelet root under /tmp (AF_UNIX paths max 107 bytes),
and a small in-test DRAEngine (the unit boundary of the kubelet layer)."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from dra_framework.kubelet import ClaimRef, PrepareOutcome, PreparedDevice

DRIVER = "gpu.example.com"


@pytest.fixture
def kroot():
    # pytest's tmp_path can exceed the sun_path limit once socket names are added.
    root = tempfile.mkdtemp(prefix="kl", dir="/tmp")
    os.makedirs(os.path.join(root, "plugins_registry"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


class FakeEngine:
    """Prepares every claim to one device named after the claim.

    omit: UIDs left out of results; fail: UIDs with a per-claim error;
    raise_exc: raised from both calls; extra: add an unrequested UID.
    """

    def __init__(self) -> None:
        self.omit: set[str] = set()
        self.fail: set[str] = set()
        self.raise_exc: Exception | None = None
        self.extra = False
        self.calls: list[tuple[str, list[ClaimRef]]] = []

    async def prepare(self, claims):
        self.calls.append(("prepare", list(claims)))
        if self.raise_exc:
            raise self.raise_exc
        out = {}
        for c in claims:
            if c.uid in self.omit:
                continue
            if c.uid in self.fail:
                out[c.uid] = PrepareOutcome(error=f"cannot prepare {c.name}")
                continue
            out[c.uid] = PrepareOutcome(devices=[
                PreparedDevice(requests=["req/sub", "req", "other"], pool="node-a", device=f"dev-{c.name}",
                               cdi_device_ids=[f"example.com/gpu={c.uid}"], share_id=f"share-{c.uid}"),
                PreparedDevice(requests=[], pool="node-a", device="shared", cdi_device_ids=[]),
            ])
        if self.extra:
            out["not-requested"] = PrepareOutcome()
        return out

    async def unprepare(self, claims):
        self.calls.append(("unprepare", list(claims)))
        if self.raise_exc:
            raise self.raise_exc
        out = {c.uid: (f"busy {c.name}" if c.uid in self.fail else "") for c in claims if c.uid not in self.omit}
        if self.extra:
            out["not-requested"] = ""
        return out


@pytest.fixture
def engine():
    return FakeEngine()

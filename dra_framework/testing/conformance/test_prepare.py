"""Prepare and unprepare through the DRA socket, as the kubelet calls them: idempotent,
concurrent-safe, CDI IDs that the reference library resolves, strict opaque configs."""
from __future__ import annotations

import asyncio

import pytest

from ...kubelet import client

pytestmark = pytest.mark.k8s


def _claims(s, allocator, prefix: str, n: int) -> list:
    out = []
    for i, pin in enumerate(s.compatible(n)):
        name = f"{prefix}-{i}"
        s.claim(name, [pin])
        s.allocate(name, allocator)
        out.append(s.ref(s.harness.objects.get("ResourceClaim", name, "dra-conformance")))
    return out


def test_prepare_and_unprepare_are_idempotent(conformance_subject, allocator, cdi_check):
    s = conformance_subject
    refs = _claims(s, allocator, "idem", 1)
    first = s.prepared(s.proc.prepare(refs))
    again = s.prepared(s.proc.prepare(refs))
    assert again == first, "a second NodePrepareResources for a prepared claim must return the same CDI IDs"
    cdi_check(s.proc.cdi_dir, [i for ids in first.values() for i in ids])
    assert s.proc.unprepare(refs) == {r.uid: "" for r in refs}
    assert s.proc.unprepare(refs) == {r.uid: "" for r in refs}, "unprepare of an unprepared claim must succeed"
    s.assert_clean("prepare, prepare, unprepare, unprepare")
    for r in refs:
        s.delete_claim(r.name)


def test_concurrent_prepare_and_unprepare(conformance_subject, allocator, cdi_check):
    """Two overlapping NodePrepareResources calls for the same claims (a kubelet retry racing
    the first call), then two overlapping NodeUnprepareResources calls."""
    s = conformance_subject
    refs = _claims(s, allocator, "conc", 4)
    endpoint = s.proc.sockets(s.driver).dra

    async def twice(fn):
        return await asyncio.gather(fn(endpoint, refs), fn(endpoint, list(reversed(refs))))

    a, b = asyncio.run(twice(client.prepare))
    assert s.prepared(a) == s.prepared(b), "overlapping prepares of one claim must agree"
    assert len(s.prepared(a)) == len(refs)
    cdi_check(s.proc.cdi_dir, [i for ids in s.prepared(a).values() for i in ids])
    u1, u2 = asyncio.run(twice(client.unprepare))
    assert u1 == u2 == {r.uid: "" for r in refs}
    s.assert_clean("overlapping prepares and unprepares")
    for r in refs:
        s.delete_claim(r.name)


def test_cdi_ids_resolve_with_the_reference_library(conformance_subject, allocator, cdi_check):
    """Every device of a sample, prepared: each CDI ID resolves and injects (containerd/CRI-O's
    library), one ID per allocated device."""
    s = conformance_subject
    refs = _claims(s, allocator, "cdi", 6)
    prepared = {}
    for r in refs:  # one at a time: concurrency is the test above
        prepared.update(s.prepared(s.proc.prepare([r])))
    for r in refs:
        assert prepared[r.uid], f"claim {r.name}: no CDI device IDs"
        edits = cdi_check(s.proc.cdi_dir, prepared[r.uid])
        assert set(edits["devices"]) == set(prepared[r.uid])
    for r in refs:
        assert s.proc.unprepare([r]) == {r.uid: ""}
    s.assert_clean("prepare and unprepare")
    for r in refs:
        s.delete_claim(r.name)


def test_unknown_field_in_own_opaque_config_is_an_error_naming_it(conformance_subject, conformance_discovery,
                                                                  allocator):
    s = conformance_subject
    types = conformance_discovery.config_types
    if not types:
        pytest.skip("the backend declares no opaque config types (dra_config_types)")
    pin = s.compatible(1)[0]
    for n, t in enumerate(types):
        field = "draConformanceUnknownField"
        params = {"apiVersion": t.api_version, "kind": t.kind, field: 1}
        name = f"strict-{n}"
        s.claim(name, [pin], configs=[{"opaque": {"driver": s.driver, "parameters": params}}])
        s.allocate(name, allocator)
        ref = s.ref(s.harness.objects.get("ResourceClaim", name, "dra-conformance"))
        out = s.proc.prepare([ref])[ref.uid]
        assert out.error, f"{t.api_version} {t.kind} with an unknown field was accepted"
        assert field in out.error, f"the error does not name the unknown field {field!r}: {out.error}"
        assert not out.devices
        s.assert_clean(f"a rejected {t.kind} config")
        assert s.proc.unprepare([ref]) == {ref.uid: ""}
        s.delete_claim(name)

"""Name grammar, claim device names, qualified names, file names (issue 5, item 2)."""
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dra_framework.cdi import (
    CdiValidationError,
    claim_device_name,
    claim_spec_file_name,
    common_spec_file_name,
    parse_claim_device_name,
    parse_qualified_name,
    qualified_name,
    validate_class,
    validate_kind,
    validate_vendor,
)
from dra_framework.cdi.names import is_device_name, is_go_device_name

GRAMMAR = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?\Z")
uuids = st.uuids().map(str)
# Any claim UID accepted: UUIDs, and arbitrary text starting with an ASCII letter/digit.
other_uids = st.builds(lambda a, b: a + b, st.sampled_from("aZ09x"), st.text(max_size=20))
any_uid = st.one_of(uuids, other_uids, uuids.map(str.upper))
devices = st.one_of(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), st.text(min_size=1))
shares = st.one_of(st.none(), uuids, st.text(min_size=1))


@given(any_uid, devices, shares)
@settings(max_examples=500)
def test_claim_device_name_valid_deterministic_invertible(uid, dev, share):
    name = claim_device_name(uid, dev, share)
    assert GRAMMAR.match(name), name
    assert is_device_name(name) and is_go_device_name(name)
    assert claim_device_name(uid, dev, share) == name
    assert parse_claim_device_name(name) == (uid, dev, share)  # a left inverse => injective


@given(st.tuples(any_uid, devices, shares), st.tuples(any_uid, devices, shares))
@settings(max_examples=500)
def test_claim_device_name_injective(a, b):
    if a != b:
        assert claim_device_name(*a) != claim_device_name(*b)


def test_claim_device_name_known_collisions_are_avoided():
    u = str(uuid.UUID(int=1))
    assert claim_device_name(u, "gpu-0") == f"{u}-gpu-0"
    assert claim_device_name(u, "gpu-0") != claim_device_name(u, "gpu", "0")
    assert claim_device_name("abcdef01", "1234-1234-1234-123456789012-gpu") != \
        claim_device_name("abcdef01-1234-1234-1234-123456789012", "gpu")
    assert claim_device_name("uid-1", "gpu_0") == "uid_2d1.gpu_5f0"
    assert claim_device_name(u, "x-") == f"{u}-x_2d"


@pytest.mark.parametrize("args", [("", "gpu"), ("_x", "gpu"), ("uid", ""), ("uid", "gpu", "")])
def test_claim_device_name_rejects(args):
    with pytest.raises(ValueError):
        claim_device_name(*args)


@pytest.mark.parametrize("v", ["k8s.gpu.example.com", "example.com", "ab", "a1-b.c2"])
def test_valid_vendor(v):
    assert validate_vendor(v) == v


@pytest.mark.parametrize("v", ["a", "", "1abc.com", "Example.com", "vendor.com-", "-x.com", "a..b", "a_b.com",
                               "x" * 254])
def test_invalid_vendor(v):
    with pytest.raises(CdiValidationError, match="vendor"):
        validate_vendor(v)


@pytest.mark.parametrize("c", ["gpu", "g1", "my-class"])
def test_valid_class(c):
    assert validate_class(c) == c


@pytest.mark.parametrize("c", ["g", "1gpu", "gpu.sub", "gpu_x", "GPU", "gpu-", "x" * 64])
def test_invalid_class(c):
    with pytest.raises(CdiValidationError, match="class"):
        validate_class(c)


def test_qualified_name():
    assert qualified_name("k8s.gpu.example.com/gpu", "abc-0") == "k8s.gpu.example.com/gpu=abc-0"
    assert validate_kind("vendor.com/device") == ("vendor.com", "device")
    for kind, name in [("vendor.com/device", "a:b"), ("vendor.com/device", "a/b"), ("vendor.com", "x"),
                       ("vendor.com/device", "-x"), ("vendor.com/device", "")]:
        with pytest.raises(CdiValidationError):
            qualified_name(kind, name)


@pytest.mark.parametrize("q,parts", [
    ("a/b=c", ("a", "b", "c")), ("vendor.com/class=0", ("vendor.com", "class", "0")),
    ("vendor1.com/class.subclass=dev1", ("vendor1.com", "class.subclass", "dev1")),
    ("yet_another-vendor2.com/c-lass_2=dev_1:2.3", ("yet_another-vendor2.com", "c-lass_2", "dev_1:2.3")),
])
def test_parse_qualified_name_go_vectors(q, parts):
    assert parse_qualified_name(q) == parts


@pytest.mark.parametrize("q", ["", "/a/b=c", "_vendor.com/class=dev", "vendor.com-/class=dev", "vendor.com/class_=dev",
                               "vendor.com/class=dev:", "vendor.com/class=*", "a/b/c=d", "vendor.com/class="])
def test_parse_qualified_name_go_invalid(q):
    with pytest.raises(CdiValidationError):
        parse_qualified_name(q)


def test_file_names():
    u = str(uuid.uuid4())
    assert claim_spec_file_name("k8s.gpu.example.com", "gpu", u) == f"k8s.gpu.example.com-gpu_{u}.json"
    assert common_spec_file_name("k8s.gpu.example.com", "gpu") == "k8s.gpu.example.com-gpu_common.json"
    for bad in ["common", "", ".hidden", "a/b", "../x"]:
        with pytest.raises(ValueError):
            claim_spec_file_name("k8s.gpu.example.com", "gpu", bad)

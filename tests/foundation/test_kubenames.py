"""dra_framework.kubenames is the one copy of the DNS-1123 and UID rules (config, PCI name prefix,
ResourceSlice and CDI checks, claim references from the kubelet). A trailing newline is not part of
a valid name: a regex anchored with "$" alone would accept it."""
from __future__ import annotations

import pytest

from dra_framework.cdi.validate import spec_issues
from dra_framework.kubenames import claim_ref_problem, is_dns_label, is_dns_subdomain, uid_problem
from dra_framework.slices.validate import driver_name_errors, pool_name_errors


@pytest.mark.parametrize("value", ["default\n", "a\n", "gpu.example.com\n"])
def test_trailing_newline_is_refused_everywhere(value):
    assert not is_dns_label(value) and not is_dns_subdomain(value)
    assert uid_problem("uid-1\n") is not None
    assert claim_ref_problem(value, "c1", "uid-1") is not None
    assert driver_name_errors(value) and pool_name_errors(value)


def test_lengths_and_shapes():
    assert is_dns_label("a" * 63) and not is_dns_label("a" * 64) and not is_dns_label("-a")
    assert is_dns_subdomain("a.b-c.d") and not is_dns_subdomain("a..b") and not is_dns_subdomain("A")
    assert not is_dns_subdomain(".".join(["a" * 63] * 4) + ".abc")  # 255 characters


def test_cdi_annotation_key_prefix_uses_the_same_rule():
    spec = {"cdiVersion": "0.6.0", "kind": "example.com/gpu", "annotations": {"bad..prefix/key": "v"},
            "devices": [{"name": "d", "containerEdits": {"env": ["A=1"]}}]}
    assert any("annotation key" in str(i) for i in spec_issues(spec))

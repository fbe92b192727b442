"""examples/hosts/tpu-* are exactly what examples/hosts/tpu_hosts.py writes."""

import pytest
from tpu_helpers import REPO, build_host
from dra_framework.testing import tree_snapshot


@pytest.mark.parametrize("name", ["tpu-v5e-8", "tpu-v4-4", "tpu-v6e-4"])
def test_committed_sample_host_matches_its_generator(tmp_path, name):
    assert tree_snapshot(REPO / "examples/hosts" / name) == tree_snapshot(build_host(name, tmp_path / name))

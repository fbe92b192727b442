"""examples/hosts/sriov-e810 is exactly what examples/hosts/sriov_e810.py writes."""

from pci_helpers import REPO, load_sample_host_module
from dra_framework.testing import tree_snapshot


def test_committed_sample_host_matches_its_generator(tmp_path):
    gen = load_sample_host_module().build(tmp_path / "gen")
    assert tree_snapshot(REPO / "examples/hosts/sriov-e810") == tree_snapshot(gen)

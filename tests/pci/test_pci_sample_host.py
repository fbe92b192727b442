"""examples/hosts/sriov-e810 is exactly what examples/hosts/sriov_e810.py writes."""
import os

from pci_helpers import REPO, load_sample_host_module


def _snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if rel == "README.md":
                continue
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                out[rel] = ("file", open(p, "rb").read())
            else:
                out[rel] = ("dir",)
    return out


def test_committed_sample_host_matches_its_generator(tmp_path):
    gen = load_sample_host_module().build(tmp_path / "gen")
    assert _snapshot(REPO / "examples/hosts/sriov-e810") == _snapshot(gen)

"""examples/hosts/tpu-* are exactly what examples/hosts/tpu_hosts.py writes."""
import os

import pytest
from tpu_helpers import REPO, build_host


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


@pytest.mark.parametrize("name", ["tpu-v5e-8", "tpu-v4-4", "tpu-v6e-4"])
def test_committed_sample_host_matches_its_generator(tmp_path, name):
    assert _snapshot(REPO / "examples/hosts" / name) == _snapshot(build_host(name, tmp_path / name))

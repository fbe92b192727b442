"""Character-device numbers for CDI nodes: real node, /dev/char, /proc/devices, path only."""
import os

import pytest

from dra_framework.pci import char_device_node, char_majors, char_numbers
from dra_framework.testing.hosttree import HostTree


def test_dev_char_symlink_gives_numbers(e810):
    assert char_numbers(e810, "/dev/vfio/vfio") == (10, 196)
    node = char_device_node(e810, "/dev/vfio/vfio")
    assert (node.path, node.type, node.major, node.minor) == ("/dev/vfio/vfio", "c", 10, 196)


def test_dynamic_major_from_dev_char(e810):
    node = char_device_node(e810, "/dev/vfio/20")
    assert (node.type, node.major, node.minor) == ("c", 243, 0)


def test_unknown_node_is_path_only(e810):
    node = char_device_node(e810, "/dev/vfio/17")
    assert node.path == "/dev/vfio/17" and node.type is None and node.major is None


def test_proc_devices_fallback_and_container_path(tmp_path):
    t = HostTree(tmp_path)
    t.proc_devices([(1, "mem"), (195, "nvidia-frontend"), (241, "vfio"), (241, "dup")], [(8, "sd")])
    assert char_majors(tmp_path) == {"mem": 1, "nvidia-frontend": 195, "vfio": 241, "dup": 241}
    assert (tmp_path / "proc/devices").read_text().startswith("Character devices:\n  1 mem\n195 nvidia-frontend\n")
    node = char_device_node(tmp_path, "/dev/vfio/noiommu-3", major_name="vfio", minor=0,
                            container_path="/dev/vfio/3")
    assert (node.path, node.host_path, node.major, node.minor) == ("/dev/vfio/3", "/dev/vfio/noiommu-3", 241, 0)
    assert char_majors(tmp_path / "nope") == {}


def test_a_real_character_device_is_stat_ed(tmp_path):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    (tmp_path / "dev").mkdir()
    os.symlink("/dev/null", tmp_path / "dev/null")
    assert char_numbers(tmp_path, "/dev/null") == (1, 3)


def test_absolute_dev_char_targets(tmp_path):
    t = HostTree(tmp_path)
    t.file("dev/infiniband/uverbs2")
    t.symlink("dev/char/231:194", "/dev/infiniband/uverbs2")
    t.symlink("dev/char/junk", "../x")
    assert char_numbers(tmp_path, "/dev/infiniband/uverbs2") == (231, 194)

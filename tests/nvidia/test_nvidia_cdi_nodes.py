"""Self-contained CDI device nodes: ``type: c`` + major/minor from ``<hostRoot>/proc/devices``
(so a runtime never stats the host node), the stat fallback, the bare-path fallback, and the
sample host tree matching its generator."""
from __future__ import annotations

import filecmp
import logging
import os
from pathlib import Path

from dra_backends.nvidia.cdi_edits import CdiBuilder, char_majors, node_numbers
from dra_backends.nvidia.fake import PRESETS, write_host_tree
from dra_backends.nvidia.fake.host_tree import CAPS_MAJOR, UVM_MAJOR
from dra_backends.nvidia.mig_tables import MODELS, gi_id_for_placement, mig_cap_minor

from nvidia_helpers import SAMPLE_HOST, Claim, allocated

VER = "550.54.15"
MIG_1G = "gpu-0000-1b-00-0-mig-1g10gb-19-0"


def nums(nodes):
    return {n.path: (n.type, n.major, n.minor) for n in nodes}


def builder(host: Path) -> CdiBuilder:
    return CdiBuilder(host, host, "/", None)


def test_proc_devices_parsed_char_section_only():
    m = char_majors(SAMPLE_HOST)
    assert m["nvidia-frontend"] == 195 and m["nvidia-uvm"] == UVM_MAJOR == 510
    assert m["nvidia-caps"] == CAPS_MAJOR == 511 and m["mem"] == 1 and m["/dev/vc/0"] == 4
    assert "device-mapper" not in m and "blkext" not in m  # block devices are not char majors
    text = (SAMPLE_HOST / "proc/devices").read_text()
    assert text.startswith("Character devices:\n  1 mem\n") and "\n\nBlock devices:\n  7 loop\n" in text
    assert char_majors(SAMPLE_HOST / "nonexistent") == {}


def test_node_numbers_layout():
    m = {"nvidia": 195, "nvidia-uvm": 500, "nvidia-caps": 501}  # older drivers: "nvidia", not "-frontend"
    assert node_numbers("/dev/nvidiactl", m) == (195, 255)
    assert node_numbers("/dev/nvidia-modeset", m) == (195, 254)
    assert node_numbers("/dev/nvidia7", m) == (195, 7)
    assert node_numbers("/dev/nvidia-uvm", m) == (500, 0)
    assert node_numbers("/dev/nvidia-uvm-tools", m) == (500, 1)
    assert node_numbers("/dev/nvidia-caps/nvidia-cap66", m) == (501, 66)
    assert node_numbers("/dev/nvidia-caps/nvidia-cap66", {"nvidia": 195}) is None
    assert node_numbers("/dev/nvidia-nvswitchctl", m) is None


def test_common_and_gpu_nodes_carry_type_major_minor():
    b = builder(SAMPLE_HOST)
    assert nums(b.common(VER).device_nodes) == {
        "/dev/nvidiactl": ("c", 195, 255), "/dev/nvidia-uvm": ("c", 510, 0),
        "/dev/nvidia-uvm-tools": ("c", 510, 1), "/dev/nvidia-modeset": ("c", 195, 254)}
    assert nums(b.gpu(3).device_nodes) == {"/dev/nvidia3": ("c", 195, 3)}
    assert all(n.host_path is None for n in b.common(VER).device_nodes)  # path/hostPath unchanged


async def test_dynamic_mig_nodes_carry_type_major_minor(driver_factory, host):
    drv = driver_factory(host, migStrategy="dynamic")
    pool = await drv.discover()
    result = await Claim(drv, "m", [allocated(drv.device(pool, MIG_1G))]).prepare()
    # caps minors from mig-minors (gpu0/gi7 → 66, ci0 → 67); the nodes do not exist under hostRoot
    assert [(n.path, n.type, n.major, n.minor) for n in result.devices[MIG_1G].edits.device_nodes] == [
        ("/dev/nvidia0", "c", 195, 0), ("/dev/nvidia-caps/nvidia-cap66", "c", 511, 66),
        ("/dev/nvidia-caps/nvidia-cap67", "c", 511, 67)]
    assert all(n.type == "c" and n.major is not None for n in result.claim_edits.device_nodes)


def test_fallback_stats_real_char_device(host):
    (host / "proc/devices").write_text("Character devices:\n195 nvidia-frontend\n\nBlock devices:\n  8 sd\n")
    (host / "dev/nvidia-uvm").unlink()
    os.symlink("/dev/null", host / "dev/nvidia-uvm")  # a real character device (1, 3)
    st = os.stat("/dev/null")
    got = nums(builder(host).common(VER).device_nodes)
    assert got["/dev/nvidia-uvm"] == ("c", os.major(st.st_rdev), os.minor(st.st_rdev))
    assert got["/dev/nvidiactl"] == ("c", 195, 255)
    assert got["/dev/nvidia-uvm-tools"] == (None, None, None)  # regular file, no entry: path only


def test_no_proc_devices_path_only_logged_once(host, caplog):
    (host / "proc/devices").unlink()
    b = builder(host)
    with caplog.at_level(logging.DEBUG, logger="dra_backends.nvidia.cdi_edits"):
        first = b.common(VER).device_nodes
        b.common(VER)
    assert [(n.path, n.type, n.major, n.minor) for n in first] == [
        (p, None, None, None) for p in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                        "/dev/nvidia-modeset")]
    recs = [r for r in caplog.records if "no major/minor" in r.getMessage()]
    assert len(recs) == 4 and all(r.levelno == logging.DEBUG for r in recs)  # once per node, not per call


def test_every_mig_placement_of_the_sample_host_resolves_caps_minors():
    b = builder(SAMPLE_HOST)
    for g in PRESETS["dgx-h100"]["gpus"]:
        for p in MODELS[g["model"]].profiles:
            for start, size in p.placements:
                gi = gi_id_for_placement(start, size)
                assert b.cap_minor(g["minor"], gi) == mig_cap_minor(g["minor"], gi)
                for ci in range(8):
                    assert b.cap_minor(g["minor"], gi, ci) == mig_cap_minor(g["minor"], gi, ci)


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = "link:" + os.readlink(p) if p.is_symlink() else ("dir" if p.is_dir() else "file")
    return out


def test_sample_host_matches_generator(tmp_path):
    """examples/hosts/dgx-h100 is exactly what `python -m dra_backends.nvidia.fake.host_tree dgx-h100`
    writes (regenerate it after changing the generator)."""
    gen = write_host_tree(tmp_path / "gen", PRESETS["dgx-h100"])
    assert _tree(SAMPLE_HOST) == _tree(gen)
    files = [k for k, v in _tree(gen).items() if v == "file"]
    _, mismatch, errors = filecmp.cmpfiles(SAMPLE_HOST, gen, files, shallow=False)
    assert mismatch == [] and errors == []

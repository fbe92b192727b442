"""The real executor: the DFL PR ioctl request and its error, and the xbmgmt command line on a
private copy of the verified bytes (removed afterwards)."""
from __future__ import annotations

import stat
import struct

import pytest

from dra_backends.fpga.executor import DFL_FPGA_FME_PORT_PR, KernelExecutor, ProgramError, Target
from dra_backends.fpga.fake.images import make_gbs, make_xclbin
from dra_backends.fpga.images import Image


def _image(data: bytes, kind: str) -> Image:
    import hashlib
    return Image("x", "/srv/x", kind, "a" * 32, "b" * 32, hashlib.sha256(data).hexdigest(), data)


def test_ioctl_number_is_the_uapi_one():
    # _IO(DFL_FPGA_MAGIC 0xB6, DFL_FME_BASE 0x80 + 0), include/uapi/linux/fpga-dfl.h
    assert DFL_FPGA_FME_PORT_PR == 0xB680
    assert struct.calcsize("=IIIIQ") == 24  # struct dfl_fpga_fme_port_pr


def test_dfl_errors_name_the_node_and_port(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/dfl-fme.0").write_bytes(b"")  # a regular file: the ioctl is refused (ENOTTY)
    ex = KernelExecutor(tmp_path, "/nonexistent/xbmgmt", tmp_path / "staging", 5)
    t = Target("dfl", "dfl-0000-3b-00-2-port1", fme_node="/dev/dfl-fme.0", port_id=1)
    with pytest.raises(ProgramError, match=r"dfl-0000-3b-00-2-port1: DFL_FPGA_FME_PORT_PR on /dev/dfl-fme.0 port 1 failed"):
        ex.program(t, _image(make_gbs("a" * 32, "b" * 32, "x"), "gbs"))
    with pytest.raises(ProgramError, match="cannot open /dev/dfl-fme.9"):
        ex.program(Target("dfl", "d", fme_node="/dev/dfl-fme.9"), _image(b"x", "gbs"))


def test_xbmgmt_gets_a_private_copy_and_the_mgmt_bdf(tmp_path):
    seen = tmp_path / "seen"
    tool = tmp_path / "xbmgmt"
    tool.write_text(f"#!/bin/sh\necho \"$@\" > {seen}\nstat -c %a \"$5\" >> {seen}\ncmp -s \"$5\" {tmp_path}/orig && echo same >> {seen}\n")
    tool.chmod(0o755)
    data = make_xclbin("a" * 32, "b" * 32, "vbnv")
    (tmp_path / "orig").write_bytes(data)
    staging = tmp_path / "staging"
    ex = KernelExecutor(tmp_path, str(tool), staging, 5)
    ex.program(Target("alveo", "alveo-0000-04-00", mgmt_bdf="0000:04:00.0"), _image(data, "xclbin"))
    args, mode, same = seen.read_text().split("\n")[:3]
    assert args.startswith("program --device 0000:04:00.0 --user ") and args.endswith(" --force")
    assert mode == "600" and same == "same"
    assert list(staging.iterdir()) == [] and stat.S_IMODE(staging.stat().st_mode) == 0o700


def test_xbmgmt_failure_carries_its_output(tmp_path):
    tool = tmp_path / "xbmgmt"
    tool.write_text("#!/bin/sh\necho 'ERROR: xclbin interface uuid mismatch' >&2\nexit 1\n")
    tool.chmod(0o755)
    ex = KernelExecutor(tmp_path, str(tool), tmp_path / "staging", 5)
    with pytest.raises(ProgramError, match="failed \\(1\\): ERROR: xclbin interface uuid mismatch"):
        ex.program(Target("alveo", "a", mgmt_bdf="0000:04:00.0"), _image(b"xclbin2\0", "xclbin"))

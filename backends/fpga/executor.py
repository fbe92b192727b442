"""Writing an image to a card: a replaceable executor (docs/fpga.md, "Programming").

* DFL: :class:`KernelExecutor` opens the card's FME node (``/dev/dfl-fme.<n>``) and issues the
  ``DFL_FPGA_FME_PORT_PR`` ioctl with the port id and the image bytes, as OPAE's ``fpgaconf``
  does; the FME driver drives the kernel's FPGA manager, bridge and region for the partial
  reconfiguration (Linux ``Documentation/fpga/dfl.rst``, "Partial Reconfiguration";
  ``include/uapi/linux/fpga-dfl.h``: ``_IO(DFL_FPGA_MAGIC 0xB6, DFL_FME_BASE 0x80 + 0)`` with
  ``struct dfl_fpga_fme_port_pr {u32 argsz, flags, port_id, buffer_size; u64 buffer_address}``).
* Alveo: :class:`KernelExecutor` runs XRT's ``xbmgmt program --device <mgmt bdf> --user <xclbin>``
  (https://xilinx.github.io/XRT/master/html/xbmgmt.html) on a private copy of the verified bytes.
* Tests and demos: ``backends/fpga/fake`` (the ``fake`` executor) changes the afu id in the
  sample host's sysfs tree and logs each call.

An executor raises :class:`ProgramError` with the tool's message on failure.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .images import Image

DFL_FPGA_MAGIC, DFL_FME_BASE = 0xB6, 0x80
#: _IO(type, nr) = type << 8 | nr (no size, no direction bits).
DFL_FPGA_FME_PORT_PR = (DFL_FPGA_MAGIC << 8) | (DFL_FME_BASE + 0)


class ProgramError(RuntimeError):
    """Programming failed; the message says where and why."""


@dataclass(frozen=True)
class Target:
    """What to program. DFL: the FME node and the port's id (and its sysfs dir, for the fake);
    Alveo: the management PF and the user PF's sysfs dir."""

    family: str                 # "dfl" or "alveo"
    device: str                 # the DRA device name (for messages and logs)
    fme_node: str = ""          # host path /dev/dfl-fme.<n>
    port_id: int = 0
    port_sysfs: str = ""        # plugin path of dfl-port.<m>
    mgmt_bdf: str = ""
    user_sysfs: str = ""        # plugin path of the user PF


class Executor(Protocol):
    def program(self, target: Target, image: Image) -> None:
        """Write ``image`` to ``target``; raise ProgramError when it did not succeed."""


class KernelExecutor:
    """The real executor: the DFL FME ioctl, or xbmgmt for Alveo."""

    def __init__(self, host_root: Path, xbmgmt: str, staging: Path, timeout: float) -> None:
        self.host_root, self.xbmgmt, self.staging, self.timeout = Path(host_root), xbmgmt, Path(staging), timeout

    def program(self, target: Target, image: Image) -> None:
        if target.family == "dfl":
            self._dfl(target, image)
        else:
            self._xbmgmt(target, image)

    def _dfl(self, target: Target, image: Image) -> None:
        node = self.host_root / target.fme_node.lstrip("/")
        buf = ctypes.create_string_buffer(image.data, len(image.data))
        fields = (0, target.port_id, len(image.data), ctypes.addressof(buf))
        if Path(target.fme_node).name.startswith("intel-fpga-fme"):
            # OPAE's out-of-tree driver: the same request, its struct ends in a u64 status
            arg = bytearray(struct.pack("=IIIIQQ", 32, *fields, 0))
        else:
            arg = bytearray(struct.pack("=IIIIQ", 24, *fields))
        try:
            fd = os.open(node, os.O_RDWR)
        except OSError as exc:
            raise ProgramError(f"{target.device}: cannot open {target.fme_node}: {exc.strerror}") from None
        try:
            fcntl.ioctl(fd, DFL_FPGA_FME_PORT_PR, arg)
        except OSError as exc:
            hint = " (the FME reported a hardware error during PR)" if exc.errno == 5 else ""
            raise ProgramError(f"{target.device}: DFL_FPGA_FME_PORT_PR on {target.fme_node} port "
                               f"{target.port_id} failed: {exc.strerror}{hint}") from None
        finally:
            os.close(fd)

    def _xbmgmt(self, target: Target, image: Image) -> None:
        self.staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        staged = self.staging / f"{image.sha256}.xclbin"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(image.data)
        cmd = [self.xbmgmt, "program", "--device", target.mgmt_bdf, "--user", str(staged), "--force"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProgramError(f"{target.device}: {' '.join(cmd)}: {exc}") from None
        finally:
            staged.unlink(missing_ok=True)
        if out.returncode != 0:
            raise ProgramError(f"{target.device}: {' '.join(cmd)} failed ({out.returncode}): "
                               f"{(out.stdout + out.stderr).strip()[-500:]}")

"""FPGA images the admin allows: lookup inside ``imageDirs`` only, digest, and the ids an image
is built for, read from its header (docs/fpga.md, "Images").

* **GBS** (Intel DFL partial-reconfiguration image, as OPAE's ``packager`` writes it and the
  Intel FPGA device plugin reads it, ``pkg/fpga/bitstream/gbs.go``): 16-byte magic
  (two little-endian u64 ``0x414750466e6f6558``, ``0x31303076534247b7``), u32 metadata length
  (1..4095), JSON metadata with ``afu-image.interface-uuid`` (the FIM it fits) and
  ``afu-image.accelerator-clusters[0].accelerator-type-uuid`` (the AFU id), then the bitstream.
* **xclbin** (Alveo, XRT ``xclbin.h``, ``struct axlf``): magic ``xclbin2\\0``; the header
  ``axlf_header`` starts at byte 304; its ``m_interface_uuid`` is at 336..352 (the shell it fits)
  and ``uuid`` at 416..432 (the xclbin UUID the user PF's ``xclbinuuid`` shows once loaded).

An image is read once, into memory: the digest, the ids and the bytes that are written to the
card all come from the same read, so a file swapped after the checks is never loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from .ids import normalize_uuid

GBS_MAGIC = struct.pack("<QQ", 0x414750466E6F6558, 0x31303076534247B7)
XCLBIN_MAGIC = b"xclbin2\0"
XCLBIN_INTERFACE = slice(336, 352)
XCLBIN_UUID = slice(416, 432)
SUFFIXES = (".gbs", ".xclbin")


class ImageError(ValueError):
    """An image that must not be loaded; the message names the image and the reason."""


@dataclass(frozen=True)
class Image:
    name: str            # as requested / found, relative to its directory
    host_path: str       # the file as the host sees it (resolved)
    kind: str            # "gbs" or "xclbin"
    interface_id: str
    afu_id: str
    sha256: str
    data: bytes


def parse_header(data: bytes, what: str) -> tuple[str, str, str]:
    """(kind, interface id, function id) from an image's first bytes; ImageError when neither
    format matches or the ids are missing."""
    if data.startswith(XCLBIN_MAGIC):
        if len(data) < XCLBIN_UUID.stop:
            raise ImageError(f"{what}: xclbin header truncated ({len(data)} bytes)")
        return "xclbin", data[XCLBIN_INTERFACE].hex(), data[XCLBIN_UUID].hex()
    if data.startswith(GBS_MAGIC):
        if len(data) < 20:
            raise ImageError(f"{what}: GBS header truncated")
        (length,) = struct.unpack_from("<I", data, 16)
        if not 0 < length < 4096 or len(data) < 20 + length:
            raise ImageError(f"{what}: GBS metadata length {length} is invalid")
        try:
            meta = json.loads(data[20:20 + length])
            afu_image = meta["afu-image"]
            interface = normalize_uuid(afu_image["interface-uuid"])
            clusters = afu_image["accelerator-clusters"]
            afu = normalize_uuid(clusters[0]["accelerator-type-uuid"]) if len(clusters) == 1 else None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ImageError(f"{what}: GBS metadata unreadable ({type(exc).__name__}: {exc})") from None
        if interface is None or afu is None:
            raise ImageError(f"{what}: GBS metadata lacks interface-uuid or a single accelerator-type-uuid")
        return "gbs", interface, afu
    raise ImageError(f"{what}: not a GBS or xclbin image (unknown magic {data[:8]!r})")


class ImageStore:
    """The images under ``imageDirs`` (host paths, seen under ``host_root``)."""

    def __init__(self, host_root: Path, dirs: list[str], max_bytes: int) -> None:
        self.host_root, self.dirs, self.max_bytes = Path(host_root), list(dirs), max_bytes

    def _dir(self, d: str) -> Path:
        return self.host_root / d.lstrip("/")

    def _inside(self, candidate: Path, d: str, name: str) -> Path:
        """``candidate`` fully resolved, refused when it leaves directory ``d``."""
        base = os.path.realpath(self._dir(d))
        real = os.path.realpath(candidate)
        if os.path.commonpath([base, real]) != base:
            raise ImageError(f"image {name!r}: resolves to {real} outside the allowed image directory {d} "
                             "(symbolic link or '..'); refused")
        return Path(real)

    def resolve(self, name: str) -> tuple[str, Path]:
        """(directory, resolved file) of image ``name`` in the first directory that has it."""
        if not self.dirs:
            raise ImageError(f"image {name!r}: programming is off (the backend option imageDirs is empty)")
        if name.startswith("/") or ".." in Path(name).parts:
            raise ImageError(f"image {name!r}: must be relative to an image directory, without '..'")
        for d in self.dirs:
            candidate = self._dir(d) / name
            if os.path.lexists(candidate):
                return d, self._inside(candidate, d, name)
        raise ImageError(f"image {name!r} not found in imageDirs {self.dirs}")

    def load(self, name: str, d: str, path: Path) -> Image:
        """Read, hash and parse one resolved image file (refusing a symlink swapped in since)."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise ImageError(f"image {name!r}: cannot open {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"image {name!r}: {path} is not a regular file")
            if st.st_size > self.max_bytes:
                raise ImageError(f"image {name!r}: {st.st_size} bytes is more than maxImageBytes {self.max_bytes}")
            data = f.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise ImageError(f"image {name!r}: more than maxImageBytes {self.max_bytes}")
        kind, interface, afu = parse_header(data, f"image {name!r}")
        host = "/" + str(path.relative_to(os.path.realpath(self.host_root))) if str(path).startswith(
            os.path.realpath(self.host_root)) else str(path)
        return Image(name, host, kind, interface, afu, hashlib.sha256(data).hexdigest(), data)

    def get(self, name: str) -> Image:
        d, path = self.resolve(name)
        return self.load(name, d, path)

    def find(self, interface_id: str, afu_id: str, kind: str) -> Image | None:
        """The first image (directory order, then name) of ``kind`` built for this interface with
        this function; files that leave their directory or do not parse are skipped."""
        for d in self.dirs:
            base = self._dir(d)
            if not base.is_dir():
                continue
            for p in sorted(list(base.glob("*")) + list(base.glob("*/*"))):
                if p.suffix not in SUFFIXES or (kind == "gbs") != (p.suffix == ".gbs"):
                    continue
                name = str(p.relative_to(base))
                try:
                    real = self._inside(p, d, name)
                    with open(real, "rb") as f:
                        head = f.read(4096 + 20)
                    k, i, a = parse_header(head, name)
                except (ImageError, OSError):
                    continue
                if k == kind and i == interface_id and a == afu_id:
                    return self.load(name, d, real)
        return None

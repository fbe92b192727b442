"""Synthetic images for sample hosts and tests: valid GBS / xclbin headers (docs/fpga.md,
"Images") around a short placeholder payload. They carry real interface and function ids, but
they are no bitstreams: only the fake executor ever "loads" them."""
from __future__ import annotations

import json
import struct

from ..images import GBS_MAGIC, XCLBIN_INTERFACE, XCLBIN_MAGIC, XCLBIN_UUID


def make_gbs(interface_id: str, afu_id: str, name: str, payload: bytes = b"synthetic PR bitstream\n") -> bytes:
    """A GBS file as OPAE's packager lays it out: magic, metadata length, JSON metadata, payload."""
    meta = json.dumps({"version": 1, "platform-name": "sample", "afu-image": {
        "magic-no": 488605312, "interface-uuid": interface_id, "power": 0,
        "accelerator-clusters": [{"name": name, "total-contexts": 1, "accelerator-type-uuid": afu_id}]}},
        sort_keys=True).encode()
    return GBS_MAGIC + struct.pack("<I", len(meta)) + meta + payload


def make_xclbin(interface_id: str, xclbin_uuid: str, vbnv: str, payload: bytes = b"synthetic xclbin\n") -> bytes:
    """An ``axlf`` header (magic, 296 bytes of signature fields, uniqueId, header) and a payload."""
    data = bytearray(448 + 4)
    data[0:8] = XCLBIN_MAGIC
    data[12:40] = b"\xff" * 28
    struct.pack_into("<Q", data, 304, len(data) + len(payload))
    data[XCLBIN_INTERFACE] = bytes.fromhex(interface_id.replace("-", ""))
    data[352:352 + len(vbnv)] = vbnv.encode()
    data[XCLBIN_UUID] = bytes.fromhex(xclbin_uuid.replace("-", ""))
    return bytes(data) + payload

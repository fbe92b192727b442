"""The checkpoint file's bytes: a header line with format, schema version, payload length and
checksum, then the canonical JSON payload ``{"bootId", "claims": {uid: entry}}`` (see
:mod:`dra_framework.engine.checkpoint` for the file and its locking, and
:mod:`dra_framework.engine.entry` for the entries and the upgrade of older versions)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from .entry import SCHEMA_VERSION, ClaimEntry, SchemaVersionError, upgrade

FORMAT = "dra-framework-checkpoint"


class CheckpointFormatError(Exception):
    """The stored bytes are not a checkpoint this version can read. ``reason`` is one of
    ``empty``, ``truncated``, ``checksum``, ``garbage``, ``newer-version``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _entry_json(obj: Any) -> Any:
    if isinstance(obj, ClaimEntry):
        return obj.to_json()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=_entry_json).encode


def encode(claims: Mapping[str, Any], boot_id: str, cache: dict[str, tuple[Any, bytes]] | None = None) -> bytes:
    """Header line + canonical JSON payload; ``claims`` values are :class:`ClaimEntry` objects
    or their JSON form. Raises TypeError/ValueError for non-JSON data.

    ``cache`` (uid → (entry, its JSON bytes)): entries are immutable, so an entry object seen at
    the last write is not serialised again; the payload is assembled from the per-entry bytes in
    uid order, byte for byte what one ``json.dumps(..., sort_keys=True)`` of the whole state
    gives. Keeps a commit's cost proportional to what changed, not to the node's claim count."""
    parts = []
    for uid in sorted(claims):
        entry = claims[uid]
        hit = cache.get(uid) if cache is not None else None
        if hit is not None and hit[0] is entry:
            raw = hit[1]
        else:
            raw = _dumps(entry).encode("utf-8")
            if cache is not None:
                cache[uid] = (entry, raw)
        parts.append(_dumps(uid).encode("utf-8") + b":" + raw)
    if cache is not None and len(cache) > len(claims):
        for uid in [u for u in cache if u not in claims]:
            del cache[uid]
    payload = b'{"bootId":' + _dumps(boot_id).encode("utf-8") + b',"claims":{' + b",".join(parts) + b"}}"
    header = {"checksum": "sha256:" + hashlib.sha256(payload).hexdigest(), "format": FORMAT,
              "length": len(payload), "version": SCHEMA_VERSION}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n" + payload


def decode(raw: bytes) -> tuple[dict[str, dict[str, Any]], str]:
    """Parse the stored bytes; returns ``(claims as JSON objects, upgraded to the current schema
    version, boot id stored in the file)``. Raises :class:`CheckpointFormatError`."""
    if not raw.strip():
        raise CheckpointFormatError("empty", "the file is empty")
    head, nl, payload = raw.partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        if not nl and raw.lstrip().startswith(b'{"checksum"'):
            raise CheckpointFormatError("truncated", "the header line is incomplete")
        raise CheckpointFormatError("garbage", "no dra-framework checkpoint header")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointFormatError("garbage", f"invalid schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise CheckpointFormatError(
            "newer-version", f"schema version {version} is newer than this driver's {SCHEMA_VERSION}")
    length = header.get("length")
    if isinstance(length, int) and len(payload) < length:
        raise CheckpointFormatError("truncated", f"payload has {len(payload)} of {length} bytes")
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    if header.get("checksum") != digest:
        raise CheckpointFormatError("checksum", f"checksum mismatch (header {header.get('checksum')!r}, "
                                                f"payload {digest})")
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise CheckpointFormatError("garbage", f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims", {}), dict):
        raise CheckpointFormatError("garbage", "payload is not a checkpoint object")
    try:
        data = upgrade(version, data)
    except SchemaVersionError as exc:
        raise CheckpointFormatError("garbage", str(exc)) from None
    claims = {str(k): v for k, v in data.get("claims", {}).items() if isinstance(v, dict)}
    return claims, str(data.get("bootId") or "")


__all__ = ["FORMAT", "CheckpointFormatError", "decode", "encode"]

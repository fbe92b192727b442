"""Programming a slot on prepare, and putting it back: checks first, journal before each write.

Order for one device (docs/fpga.md, "Programming"):

1. pick the image: ``image`` (inside ``imageDirs`` only) or the image built for the card's
   interface with ``afuId``; read it once; check ``sha256``; check the image's interface id
   against the card's and its function id against ``afuId`` — all before anything is written;
2. nothing to do when the card already has that function;
3. ``ctx.record("fpga.program/<device>", {previous, target, image, step: "program"})`` (the
   checkpoint says what is about to change), then the *in-flight* entry in
   ``<stateDir>/programming.json`` (what the health loop taints the device with after a crash),
   then the executor;
4. read the function id back; ``step: "done"`` is recorded and the in-flight entry dropped only
   when it is the target.

A failure (or a crash, followed by the kubelet's retry or unprepare) rolls back through
:meth:`Programmer.restore`: the previous function's image is loaded when ``imageDirs`` has it;
otherwise the entry stays, as ``failed`` with the reason, and the device stays tainted until a
later programming of it succeeds. A card is never left silently half-programmed.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from dra_framework.api import read_json_object, write_json_atomic

from .config import FpgaConfig
from .discovery import Slot
from .executor import Executor, ProgramError
from .ids import normalize_uuid
from .images import Image, ImageError, ImageStore

log = logging.getLogger(__name__)
JOURNAL_PREFIX = "fpga.program/"


class InFlight:
    """``<stateDir>/programming.json``: device → {state: programming|failed, previous, target,
    image, since, reason}. Survives a crash; removed when empty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def all(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in read_json_object(self.path).items() if isinstance(v, dict)}

    def set(self, name: str, **entry: Any) -> None:
        with self._lock:
            data = self.all()
            data[name] = {**entry, "device": name, "since": time.time()}
            write_json_atomic(self.path, data)

    def drop(self, device: str) -> None:
        with self._lock:
            data = self.all()
            if data.pop(device, None) is None:
                return
            if data:
                write_json_atomic(self.path, data)
            else:
                self.path.unlink(missing_ok=True)


class Programmer:
    def __init__(self, store: ImageStore, executor: Executor, inflight: InFlight,
                 on_change: Callable[[], None]) -> None:
        self.store, self.executor, self.inflight, self.on_change = store, executor, inflight, on_change

    def select(self, slot: Slot, cfg: FpgaConfig) -> Image:
        """The verified image for ``cfg`` on ``slot``; ImageError naming the image and the check
        that failed. Nothing has been written when this raises."""
        iface = slot.interface_id()
        if iface is None:
            raise ImageError(f"device {slot.name}: the card's interface id is unreadable; cannot check any image")
        if cfg.image is not None:
            image = self.store.get(cfg.image)
        else:
            assert cfg.afu_id is not None
            found = self.store.find(iface, cfg.afu_id, slot.kind)
            if found is None:
                raise ImageError(f"afuId {cfg.afu_id}: no {slot.kind} image for interface {iface} in imageDirs "
                                 f"{self.store.dirs}")
            image = found
        if cfg.sha256 is not None and image.sha256 != cfg.sha256.lower():
            raise ImageError(f"image {image.name!r}: sha256 {image.sha256} does not match the config's {cfg.sha256.lower()}")
        if image.kind != slot.kind:
            raise ImageError(f"image {image.name!r}: a {image.kind} image cannot be loaded on {slot.family} device {slot.name}")
        if image.interface_id != iface:
            raise ImageError(f"image {image.name!r}: built for interface {image.interface_id}, but device {slot.name} "
                             f"has interface {iface}; nothing was written")
        if cfg.afu_id is not None and image.afu_id != cfg.afu_id:
            raise ImageError(f"image {image.name!r}: contains function {image.afu_id}, not the requested afuId {cfg.afu_id}")
        return image

    async def ensure(self, record: Callable[[str, Any], Any], slot: Slot, image: Image) -> bool:
        """Load ``image`` on ``slot`` unless it is loaded already (True when it wrote)."""
        previous = slot.afu_id()
        if previous == image.afu_id and slot.name not in self.inflight.all():
            return False
        key = JOURNAL_PREFIX + slot.name
        entry = {"previous": previous, "target": image.afu_id, "image": image.host_path,
                 "sha256": image.sha256, "interfaceId": image.interface_id}
        await record(key, {**entry, "device": slot.name, "step": "program"})
        self.inflight.set(slot.name, state="programming", **entry)
        await self._write(slot, image)
        await record(key, {**entry, "device": slot.name, "step": "done"})
        self.inflight.drop(slot.name)
        self.on_change()
        return True

    async def _write(self, slot: Slot, image: Image) -> None:
        try:
            await asyncio.to_thread(self.executor.program, slot.target(), image)
        finally:
            self.on_change()
        now = slot.afu_id()
        if now != image.afu_id:
            raise ProgramError(f"device {slot.name}: function id reads {now} after loading {image.name!r} "
                               f"(expected {image.afu_id})")
        log.info("FPGA device %s: loaded %s (function %s)", slot.name, image.host_path, image.afu_id)

    async def restore(self, slot: Slot | None, device: str, entry: dict[str, Any], why: str) -> bool:
        """Put ``device`` back to ``entry['previous']`` (or to ``entry['target']`` for a default
        function). Never raises: a device that cannot be restored is left tainted as ``failed``
        with the reason. True when the device ends in the wanted state."""
        want = normalize_uuid(entry.get("previous") if "previous" in entry else entry.get("target"))
        if slot is None:
            self.inflight.set(device, state="failed", reason=f"{why}: the card is gone", **_keep(entry))
            return False
        now = slot.afu_id()
        if want is not None and now == want:
            self.inflight.drop(device)
            self.on_change()
            return True
        iface = slot.interface_id()
        image = self.store.find(iface, want, slot.kind) if (iface and want) else None
        if image is None:
            reason = (f"{why}: function {now} is loaded and no image in imageDirs restores {want}"
                      if want else f"{why}: the previous function is unknown")
            log.error("FPGA device %s: %s; device tainted until a claim programs it", device, reason)
            self.inflight.set(device, state="failed", reason=reason, **_keep(entry))
            self.on_change()
            return False
        try:
            self.inflight.set(device, state="programming", **{**_keep(entry), "target": want, "image": image.host_path})
            await self._write(slot, image)
        except (ProgramError, OSError) as exc:
            self.inflight.set(device, state="failed", reason=f"{why}: restoring {want} failed: {exc}", **_keep(entry))
            self.on_change()
            return False
        self.inflight.drop(device)
        self.on_change()
        return True


def _keep(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("previous", "target", "image") if k in entry}

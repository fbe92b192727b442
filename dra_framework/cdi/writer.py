"""Writing, checking and removing the CDI spec files of one driver (one vendor/class).

Files (docs/cdi-rules.md#file-names; names in :mod:`dra_framework.cdi.names`):

* per claim ``<cdi_root>/<vendor>-<class>_<claimUID>.json`` with one CDI device per allocated
  device, named by :func:`~dra_framework.cdi.names.claim_device_name`, plus the claim-wide edits
  as the spec-level ``containerEdits`` (applied once when any of its devices is injected);
* one common spec ``<cdi_root>/<vendor>-<class>_common.json`` with the single device ``common``.

Every write: build the document (JSON, camelCase, no nulls) -> apply the host-root transform
(:mod:`~dra_framework.cdi.hostroot`) -> ``cdiVersion`` = computed minimum
(:mod:`~dra_framework.cdi.version`) -> :func:`~dra_framework.cdi.validate.validate_spec` (strict; the
JSON-schema step is skipped because the typed models cannot violate it) -> atomic write. An
invalid spec is never written.

Atomic write (docs/cdi-rules.md#atomic-write, docs/cdi-rules.md#discovery): a temp file **in the same directory** named
``.<final-name>.<random>.tmp`` — a leading dot and a ``.tmp`` extension, so runtimes (which only
read ``*.json``/``*.yaml``) never load it -> write -> ``fchmod 0644`` (the Go helper's 0600 is
unreadable for rootless runtimes, issue #224) -> ``fsync`` -> ``os.replace`` onto the final name
(a rename inside the watched dir, which fsnotify-based caches notice) -> ``fsync`` the directory.
The temp file is removed on any failure. ``cdi_root`` is created (mode 0755) if missing.

Ordering duties of the caller (docs/cdi-rules.md#kubelet): write the claim spec before Prepare returns,
rewrite it on every Prepare (:meth:`CdiWriter.ensure_claim_spec`), remove it on Unprepare before
releasing driver state, and at start-up remove specs whose claim is not checkpointed
(:meth:`CdiWriter.list_claim_spec_uids`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..fsutil import atomic_write_file as _atomic_write
from ..fsutil import fsync_dir, make_dirs, remove_stale_temp_files
from ..paths import DEFAULT_CDI_ROOT
from .edits import ContainerEdits
from .errors import CdiValidationError
from .hostroot import HostRootMap, apply_host_root
from .names import (
    COMMON_DEVICE_NAME,
    COMMON_SPEC_ID,
    SPEC_EXTENSION,
    check_claim_uid_for_file,
    claim_device_name,
    claim_spec_file_name,
    common_spec_file_name,
    spec_file_prefix,
    validate_class,
    validate_vendor,
)
from .validate import validate_spec
from .version import minimum_version, version_key

#: One allocated device of a claim: (DRA device name, share id or None, its container edits).
ClaimDevice = tuple[str, "str | None", ContainerEdits]

SPEC_FILE_MODE = 0o644
#: cdi_root when this writer creates it: container runtimes (also rootless ones) must read it.
CDI_DIR_MODE = 0o755
#: Env var injected (value: the CDI device name) for a device whose edits are empty, because CDI
#: rejects devices without edits (the workaround of dra-driver-nvidia-gpu#1144, docs/cdi-rules.md#known-issues).
INERT_ENV_NAME = "DRA_CDI_DEVICE"


def atomic_write_file(path: str, data: bytes, mode: int = SPEC_FILE_MODE) -> None:
    """Atomically replace ``path`` with ``data`` (docs/cdi-rules.md#atomic-write), creating its directory; see
    :func:`dra_framework.fsutil.atomic_write_file`. Raises ``OSError``."""
    make_dirs(os.path.dirname(path) or ".", CDI_DIR_MODE)
    _atomic_write(path, data, mode)


def _dumps(spec: Mapping[str, Any]) -> bytes:
    return (json.dumps(spec, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class CdiWriter:
    """Writes the CDI specs of one driver kind ``vendor/class_`` into ``cdi_root``.

    ``cdi_root``: directory the container runtime scans (default ``/var/run/cdi``, the highest
    priority default dir, docs/cdi-rules.md#directories). ``vendor``: lower-case DNS subdomain starting with a letter
    (e.g. ``k8s.gpu.example.com``); ``class_``: ``[a-z][a-z0-9-]*[a-z0-9]`` (docs/cdi-rules.md#names).
    ``host_root_map``: ``{path in driver container: path on host}`` for
    :func:`~dra_framework.cdi.hostroot.apply_host_root`. ``max_cdi_version``: optional cap (e.g.
    ``"0.5.0"`` for containerd 1.7.0-1.7.11, docs/cdi-rules.md#runtime-versions); a spec needing more raises
    :class:`CdiValidationError` instead of being written.

    Raises :class:`CdiValidationError` for an invalid vendor/class.
    """

    def __init__(self, cdi_root: str = DEFAULT_CDI_ROOT, *, vendor: str, class_: str,
                 host_root_map: HostRootMap | None = None, max_cdi_version: str | None = None) -> None:
        self.cdi_root = os.fspath(cdi_root)
        self.vendor = validate_vendor(vendor)
        self.class_ = validate_class(class_)
        self.kind = f"{vendor}/{class_}"
        self.host_root_map = dict(host_root_map or {})
        self.max_cdi_version = max_cdi_version
        if max_cdi_version is not None:
            version_key(max_cdi_version)

    # --- building ---------------------------------------------------------------------------

    def qualified(self, device_name: str) -> str:
        """``vendor/class=device_name``."""
        return f"{self.kind}={device_name}"

    def claim_spec_path(self, claim_uid: str) -> str:
        """Absolute path of the claim's spec file. Raises ``ValueError`` for an unusable UID."""
        return os.path.join(self.cdi_root, claim_spec_file_name(self.vendor, self.class_, claim_uid))

    @property
    def common_spec_path(self) -> str:
        """Path of the per-driver common spec."""
        return os.path.join(self.cdi_root, common_spec_file_name(self.vendor, self.class_))

    def _device(self, name: str, edits: ContainerEdits) -> dict[str, Any]:
        edits = apply_host_root(edits, self.host_root_map)
        if edits.is_empty():
            edits = ContainerEdits(env={INERT_ENV_NAME: name})
        return {"name": name, "containerEdits": edits.to_cdi()}

    def _finish(self, spec: dict[str, Any], source: str) -> dict[str, Any]:
        version = minimum_version(spec)
        spec = {"cdiVersion": version, **spec}
        if self.max_cdi_version and version_key(version) > version_key(self.max_cdi_version):
            raise CdiValidationError(
                f"cdiVersion: the content needs {version}, above the configured maximum {self.max_cdi_version}",
                source=source)
        # Built from the typed edit models, so schema-valid by construction (tests/cdi check it);
        # the whole-spec rules (names, paths, duplicates, versions) still run on every write.
        validate_spec(spec, strict=True, source=source, schema=False)
        return spec

    def build_claim_spec(self, claim_uid: str, devices: Sequence[ClaimDevice],
                         claim_edits: ContainerEdits | None = None) -> dict[str, Any]:
        """The validated CDI document for a claim (nothing is written). ``devices``: non-empty list
        of ``(device_name, share_id | None, edits)``; a device with empty edits gets the inert env
        var :data:`INERT_ENV_NAME`. Raises :class:`CdiValidationError` (invalid content, duplicate
        device, version above the cap) or ``ValueError`` (empty list, unusable names)."""
        check_claim_uid_for_file(claim_uid)
        if not devices:
            raise ValueError(f"claim {claim_uid}: a CDI spec needs at least one device")
        spec: dict[str, Any] = {"kind": self.kind}
        if claim_edits is not None:
            ce = apply_host_root(claim_edits, self.host_root_map)
            if not ce.is_empty():
                spec["containerEdits"] = ce.to_cdi()
        spec["devices"] = [self._device(claim_device_name(claim_uid, dev, share), edits)
                           for dev, share, edits in devices]
        return self._finish(spec, claim_spec_file_name(self.vendor, self.class_, claim_uid))

    # --- claim specs --------------------------------------------------------------------------

    def write_claim_spec(self, claim_uid: str, devices: Sequence[ClaimDevice],
                         claim_edits: ContainerEdits | None = None) -> list[str]:
        """Validate and atomically (over)write the claim's spec. Returns the qualified CDI device
        IDs (``vendor/class=name``) in the order of ``devices`` (the common device is *not*
        included; add :meth:`common_device_id` if the common spec is used). Raises
        :class:`CdiValidationError`/``ValueError`` (nothing written) or ``OSError``."""
        spec = self.build_claim_spec(claim_uid, devices, claim_edits)
        path = self.claim_spec_path(claim_uid)
        self._check_not_foreign(path)
        atomic_write_file(path, _dumps(spec))
        return [self.qualified(d["name"]) for d in spec["devices"]]

    def claim_spec_exists_and_matches(self, claim_uid: str, devices: Sequence[ClaimDevice],
                                      claim_edits: ContainerEdits | None = None) -> bool:
        """True when the claim's spec file exists, is mode 0644 and its parsed content equals what
        :meth:`write_claim_spec` would write now. Never raises for a missing/corrupt file (False);
        raises like :meth:`build_claim_spec` for invalid arguments."""
        expected = self.build_claim_spec(claim_uid, devices, claim_edits)
        path = self.claim_spec_path(claim_uid)
        try:
            if os.stat(path).st_mode & 0o7777 != SPEC_FILE_MODE:
                return False
            with open(path, "rb") as f:
                return json.load(f) == expected
        except (OSError, ValueError):
            return False

    def ensure_claim_spec(self, claim_uid: str, devices: Sequence[ClaimDevice],
                          claim_edits: ContainerEdits | None = None) -> list[str]:
        """Re-prepare helper: rewrite the claim's spec unless it already matches; returns the IDs
        as :meth:`write_claim_spec` does (docs/cdi-rules.md#kubelet: kubelet re-prepares after a restart)."""
        if self.claim_spec_exists_and_matches(claim_uid, devices, claim_edits):
            return self.read_claim_spec_ids(claim_uid) or []
        return self.write_claim_spec(claim_uid, devices, claim_edits)

    def read_claim_spec_ids(self, claim_uid: str) -> list[str] | None:
        """Qualified IDs of the devices in the claim's spec file, in file order; ``None`` when the
        file does not exist. Raises :class:`CdiValidationError` if it cannot be parsed."""
        path = self.claim_spec_path(claim_uid)
        try:
            with open(path, "rb") as f:
                spec = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise CdiValidationError(f"cannot parse: {exc}", source=path) from exc
        try:
            return [f"{spec['kind']}={d['name']}" for d in spec["devices"]]
        except (KeyError, TypeError) as exc:
            raise CdiValidationError(f"missing kind/devices/name: {exc}", source=path) from exc

    def remove_claim_spec(self, claim_uid: str) -> bool:
        """Delete the claim's spec file (and fsync the dir). Returns False when it did not exist
        (not an error, like Go ``RemoveSpec``), and when the file holds another kind's spec (it is
        left alone, see :meth:`foreign_kind`). Raises ``OSError`` for other failures."""
        path = self.claim_spec_path(claim_uid)
        if self.foreign_kind(path) is not None:
            return False
        return self._remove(path)

    def list_claim_spec_uids(self) -> list[str]:
        """Sorted claim UIDs that have a spec file of this vendor/class in ``cdi_root`` (for the
        start-up reconcile against the checkpoint). A file counts when its name is
        ``<vendor>-<class>_<uid>.json`` (not the common spec, not a temp file) and its ``kind`` is
        ours — or it cannot be parsed (a corrupt file of ours should be cleaned up too). Returns
        ``[]`` when ``cdi_root`` does not exist."""
        prefix = spec_file_prefix(self.vendor, self.class_)
        try:
            names = os.listdir(self.cdi_root)
        except FileNotFoundError:
            return []
        uids = []
        for name in names:
            if not (name.startswith(prefix) and name.endswith(SPEC_EXTENSION)):
                continue
            uid = name[len(prefix):-len(SPEC_EXTENSION)]
            try:
                check_claim_uid_for_file(uid)
            except ValueError:
                continue
            path = os.path.join(self.cdi_root, name)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    kind = json.load(f).get("kind")
            except (OSError, ValueError, AttributeError):
                kind = self.kind
            if kind == self.kind:
                uids.append(uid)
        return sorted(uids)

    def remove_stale_temp_files(self) -> list[str]:
        """Delete leftover temp files of this writer (``.<vendor>-<class>_*.tmp``, e.g. after a
        crash mid-write) that no live writer holds (see
        :func:`dra_framework.fsutil.remove_stale_temp_files`). Returns the removed paths."""
        return remove_stale_temp_files(self.cdi_root, prefix="." + spec_file_prefix(self.vendor, self.class_))

    # --- common spec -------------------------------------------------------------------------

    def common_device_id(self) -> str:
        """``vendor/class=common``."""
        return self.qualified(COMMON_DEVICE_NAME)

    def build_common_spec(self, edits: ContainerEdits) -> dict[str, Any]:
        """The validated common-spec document (nothing written). ``edits`` must be non-empty."""
        if apply_host_root(edits, self.host_root_map).is_empty():
            raise ValueError("the common CDI device needs non-empty container edits")
        spec = {"kind": self.kind, "devices": [self._device(COMMON_DEVICE_NAME, edits)]}
        return self._finish(spec, common_spec_file_name(self.vendor, self.class_))

    def write_common_spec(self, edits: ContainerEdits) -> str:
        """Validate and atomically write ``<vendor>-<class>_common.json`` with device ``common``
        carrying ``edits`` (node-wide edits every claim of this driver gets). Returns its qualified
        ID ``vendor/class=common``. Raises like :meth:`write_claim_spec`."""
        spec = self.build_common_spec(edits)
        self._check_not_foreign(self.common_spec_path)
        atomic_write_file(self.common_spec_path, _dumps(spec))
        return self.common_device_id()

    def remove_common_spec(self) -> bool:
        """Delete the common spec; False when it did not exist or holds another kind's spec."""
        if self.foreign_kind(self.common_spec_path) is not None:
            return False
        return self._remove(self.common_spec_path)

    # --- ownership ---------------------------------------------------------------------------

    def foreign_kind(self, path: str) -> str | None:
        """The ``kind`` of the spec at ``path`` when it is another kind than ours, else None (also
        for a missing or unparseable file). Two kinds whose ``<vendor>-<class>`` strings are equal
        name their files alike; config loading refuses that within one config, this catches
        it across processes: such a file is never overwritten nor deleted by this writer."""
        try:
            with open(path, "rb") as f:
                kind = json.load(f).get("kind")
        except (OSError, ValueError, AttributeError):
            return None
        return kind if isinstance(kind, str) and kind != self.kind else None

    def _check_not_foreign(self, path: str) -> None:
        kind = self.foreign_kind(path)
        if kind is not None:
            raise CdiValidationError(
                f"the file holds CDI kind {kind}, not {self.kind}: another driver on this node writes spec "
                f"files with the same names; give one of them another cdiVendor or cdiClass", source=path)

    # --- helpers -----------------------------------------------------------------------------

    def _remove(self, path: str, fsync: bool = True) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        if fsync:
            fsync_dir(os.path.dirname(path) or ".")
        return True


__all__ = ["CdiWriter", "ClaimDevice", "atomic_write_file", "DEFAULT_CDI_ROOT", "SPEC_FILE_MODE",
           "INERT_ENV_NAME", "COMMON_SPEC_ID"]

"""Validation of a whole CDI spec document before it is written (or after it is read).

:func:`validate_spec` runs, in this order, and reports **every** finding at once:

1. the upstream JSON schema (package data ``dra_framework/cdi/schema/{schema,defs}.json``, a
   verbatim copy, see ``schema/SOURCE.md``; docs/cdi-rules.md#schema);
2. the rules the reference Go library enforces on load beyond the schema
   (docs/cdi-rules.md#load-rules, ``pkg/cdi/spec.go``, ``device.go``, ``container-edits.go``,
   ``pkg/parser/parser.go``, ``internal/validation``): strict fields (unknown keys are errors),
   ``ValidateVersion`` (docs/cdi-rules.md#minimum-version), vendor/class syntax, annotations
   (docs/cdi-rules.md#annotations), at least one device, device-name syntax, unique device
   names, non-empty device edits, env ``NAME=VALUE`` (also hook env), device node non-empty
   ``path``/valid ``type``/``permissions`` (letters r, w, m), mount non-empty paths, hook names
   and non-empty path, ``closID``, net devices non-empty and unique names,
   integer ranges (``fileMode`` is not in the schema);
3. with ``strict=True`` (the default; what this framework writes), also the SPEC's MUSTs and
   framework policy (docs/cdi-rules.md#framework-policy): absolute and clean paths (device
   nodes, hook paths, mount container paths, bind-mount host paths), hook ``timeout`` > 0, no
   1-char vendor/class (panics in libraries <= v1.1.0, PR #321), no ``:`` in device names, and
   ``cdiVersion`` must equal the computed minimum (so old runtimes can read it).

Errors raise :class:`CdiValidationError` whose issues name the device and the field, e.g.
``devices[2] "abc-gpu0": containerEdits.deviceNodes[0].path: must be an absolute path``.
"""
from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from .edits import DEVICE_NODE_TYPES, HOOK_NAMES, INT64_MAX, INT64_MIN, UINT32_MAX
from ..kubenames import is_dns_subdomain
from .errors import CdiIssue, CdiValidationError
from .names import is_go_device_name, is_go_vendor_or_class
from .version import KNOWN_VERSIONS, minimum_version, version_key

GO, SPEC, POLICY, SCHEMA = "CDI Go library", "CDI SPEC", "framework policy", "CDI JSON schema"

_KEYS = {
    "spec": {"cdiVersion", "kind", "annotations", "devices", "containerEdits"},
    "device": {"name", "annotations", "containerEdits"},
    "edits": {"env", "deviceNodes", "mounts", "hooks", "intelRdt", "additionalGids", "netDevices"},
    "node": {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"},
    "mount": {"hostPath", "containerPath", "options", "type"},
    "hook": {"hookName", "path", "args", "env", "timeout"},
    "rdt": {"closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring"},
    "net": {"hostInterfaceName", "name"},
}
_QNAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
ANNOTATIONS_MAX_BYTES = 256 * 1024
_NON_BIND_OK = {"", "bind", "rbind", "none"}


@lru_cache(maxsize=1)
def schema_validator():
    """A ``jsonschema`` Draft-7 validator for the bundled CDI schema (``defs.json`` registered
    under the URI ``defs.json``, docs/cdi-rules.md#schema)."""
    from jsonschema import Draft7Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    pkg = resources.files("dra_framework.cdi.schema")
    schema = json.loads(pkg.joinpath("schema.json").read_text(encoding="utf-8"))
    defs = json.loads(pkg.joinpath("defs.json").read_text(encoding="utf-8"))
    registry = Registry().with_resource("defs.json", Resource.from_contents(defs, default_specification=DRAFT7))
    return Draft7Validator(schema, registry=registry)


class _Ctx:
    def __init__(self, spec: Mapping[str, Any], strict: bool) -> None:
        self.spec, self.strict = spec, strict
        self.issues: list[CdiIssue] = []

    def loc(self, path: tuple[Any, ...]) -> str:
        """``("devices", 2, "containerEdits", "env", 0)`` -> ``devices[2] "name": containerEdits.env[0]``."""
        parts: list[str] = []
        prefix = ""
        p = list(path)
        if len(p) >= 2 and p[0] == "devices" and isinstance(p[1], int):
            devs = self.spec.get("devices")
            name = None
            if isinstance(devs, list) and p[1] < len(devs) and isinstance(devs[p[1]], Mapping):
                name = devs[p[1]].get("name")
            prefix = f"devices[{p[1]}]" + (f" {json.dumps(name)}" if isinstance(name, str) else "")
            p = p[2:]
        for x in p:
            if isinstance(x, int):
                parts.append(f"[{x}]")
            else:
                parts.append(("." if parts else "") + str(x))
        field = "".join(parts)
        if prefix:
            return f"{prefix}: {field}" if field else prefix
        return field or "(spec)"

    def add(self, path: tuple[Any, ...], message: str, rule: str) -> None:
        self.issues.append(CdiIssue(self.loc(path), message, rule))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_keys(c: _Ctx, obj: Any, kind: str, path: tuple[Any, ...]) -> bool:
    if not isinstance(obj, Mapping):
        return False
    for k in obj:
        if k not in _KEYS[kind]:
            c.add(path + (k,), "unknown field (runtimes parse strictly, docs/cdi-rules.md#load-rules)", GO)
    return True


def _check_path(c: _Ctx, value: Any, path: tuple[Any, ...], what: str = "path") -> None:
    if not isinstance(value, str) or not value:
        c.add(path, f"{what} must not be empty", GO)
        return
    if c.strict:
        if not value.startswith("/"):
            c.add(path, "must be an absolute path", SPEC)
        elif "\0" in value or posixpath.normpath(value) != value:
            c.add(path, f"must be a clean absolute path (got {value!r}, clean form "
                        f"{posixpath.normpath(value)!r})", POLICY)


def _check_env(c: _Ctx, env: Any, path: tuple[Any, ...]) -> None:
    if not isinstance(env, list):
        return
    for i, e in enumerate(env):
        if not isinstance(e, str):
            c.add(path + (i,), "env entry must be a string", GO)
        elif e.find("=") <= 0:
            c.add(path + (i,), f"invalid env entry {e!r}: must be NAME=VALUE with a non-empty NAME", GO)


def _check_annotations(c: _Ctx, ann: Any, path: tuple[Any, ...]) -> None:
    if not isinstance(ann, Mapping):
        return
    total = 0
    for k, v in ann.items():
        total += len(str(k).encode()) + (len(v.encode()) if isinstance(v, str) else 0)
        if not isinstance(v, str):
            c.add(path + (k,), "annotation value must be a string", GO)
        key = str(k).lower()
        prefix, slash, name = key.rpartition("/")
        ok = (key.count("/") <= 1 and 0 < len(name) <= 63 and _QNAME.match(name)
              and (not slash or (0 < len(prefix) and is_dns_subdomain(prefix))))
        if not ok:
            c.add(path + (k,), "annotation key must be a Kubernetes qualified name ([prefix/]name, docs/cdi-rules.md#annotations)", GO)
    if total > ANNOTATIONS_MAX_BYTES:
        c.add(path, f"annotations too large: {total} bytes > {ANNOTATIONS_MAX_BYTES}", GO)


def _check_edits(c: _Ctx, e: Any, path: tuple[Any, ...]) -> None:
    if not _check_keys(c, e, "edits", path):
        return
    _check_env(c, e.get("env"), path + ("env",))

    for i, n in enumerate(e.get("deviceNodes") or ()):
        p = path + ("deviceNodes", i)
        if not _check_keys(c, n, "node", p):
            continue
        _check_path(c, n.get("path"), p + ("path",))
        if "hostPath" in n and n["hostPath"] != "":
            _check_path(c, n["hostPath"], p + ("hostPath",), "hostPath")
        t = n.get("type")
        if t is not None and t not in ("",) + DEVICE_NODE_TYPES:
            c.add(p + ("type",), f"invalid device node type {t!r}: must be one of b, c, u, p", GO)
        perm = n.get("permissions")
        if isinstance(perm, str) and set(perm) - set("rwm"):
            c.add(p + ("permissions",), f"invalid permissions {perm!r}: only the letters r, w, m "
                                        f"(\"none\" is unknown to libraries <= v1.1.0, docs/cdi-rules.md#versions)", GO)
        fm = n.get("fileMode")
        if fm is not None and not (_is_int(fm) and 0 <= fm <= UINT32_MAX):
            c.add(p + ("fileMode",), "fileMode must be an integer in the uint32 range (Go os.FileMode)", GO)
        for k in ("major", "minor"):
            if _is_int(n.get(k)) and not INT64_MIN <= n[k] <= INT64_MAX:
                c.add(p + (k,), "out of int64 range", GO)

    for i, m in enumerate(e.get("mounts") or ()):
        p = path + ("mounts", i)
        if not _check_keys(c, m, "mount", p):
            continue
        _check_path(c, m.get("containerPath"), p + ("containerPath",), "containerPath")
        host = m.get("hostPath")
        mtype = m.get("type") or ""
        opts = m.get("options") or []
        bind = mtype in _NON_BIND_OK or (isinstance(opts, list) and ({"bind", "rbind"} & set(map(str, opts))))
        if bind:
            _check_path(c, host, p + ("hostPath",), "hostPath")
        elif not isinstance(host, str) or not host:
            c.add(p + ("hostPath",), "hostPath must not be empty", GO)

    for i, h in enumerate(e.get("hooks") or ()):
        p = path + ("hooks", i)
        if not _check_keys(c, h, "hook", p):
            continue
        if h.get("hookName") not in HOOK_NAMES:
            c.add(p + ("hookName",), f"invalid hook name {h.get('hookName')!r}: must be one of "
                                     f"{', '.join(HOOK_NAMES)}", GO)
        _check_path(c, h.get("path"), p + ("path",))
        _check_env(c, h.get("env"), p + ("env",))
        if c.strict and h.get("timeout") is not None and _is_int(h["timeout"]) and h["timeout"] <= 0:
            c.add(p + ("timeout",), "timeout must be > 0 seconds when set", SPEC)

    rdt = e.get("intelRdt")
    if rdt is not None and _check_keys(c, rdt, "rdt", path + ("intelRdt",)):
        clos = rdt.get("closID")
        if isinstance(clos, str) and clos != "/" and (
                clos in (".", "..") or "/" in clos or "\n" in clos or len(clos) >= 4096):
            c.add(path + ("intelRdt", "closID"), f"invalid closID {clos!r}", GO)

    seen_host: dict[str, int] = {}
    seen_name: dict[str, int] = {}
    for i, nd in enumerate(e.get("netDevices") or ()):
        p = path + ("netDevices", i)
        if not _check_keys(c, nd, "net", p):
            continue
        for key, seen in (("hostInterfaceName", seen_host), ("name", seen_name)):
            v = nd.get(key)
            if not isinstance(v, str) or not v:
                c.add(p + (key,), f"{key} must not be empty", GO)
            elif v in seen:
                c.add(p + (key,), f"duplicate {key} {v!r} (also netDevices[{seen[v]}])", GO)
            else:
                seen[v] = i


def spec_issues(spec: Any, *, strict: bool = True, schema: bool = True) -> list[CdiIssue]:
    """Every finding for the CDI JSON document ``spec`` (dict, camelCase keys); empty when valid.
    ``strict`` adds the SPEC MUSTs and framework policy (module docstring, step 3).
    ``schema=False`` skips the JSON-schema step: for documents built from the typed models of
    :mod:`dra_framework.cdi.edits`, which cannot produce a schema violation (tests/cdi check
    this), and whose schema check would cost more than the rest of a claim's CDI write."""
    if not isinstance(spec, Mapping):
        return [CdiIssue("(spec)", "a CDI spec must be a JSON object", SCHEMA)]
    c = _Ctx(spec, strict)

    if schema:
        for err in sorted(schema_validator().iter_errors(spec), key=lambda e: list(map(str, e.absolute_path))):
            c.add(tuple(err.absolute_path), err.message, SCHEMA)

    _check_keys(c, spec, "spec", ())

    # cdiVersion (docs/cdi-rules.md#minimum-version)
    declared = spec.get("cdiVersion")
    if isinstance(declared, str):
        v = declared.removeprefix("v")
        need = minimum_version(spec)
        if v not in KNOWN_VERSIONS:
            c.add(("cdiVersion",), f"invalid version {declared!r}", GO)
        elif version_key(need) > version_key(v):
            c.add(("cdiVersion",), f"the spec version must be at least v{need}, got {declared!r}", GO)
        elif strict and v != need:
            c.add(("cdiVersion",), f"must be the minimum required version {need!r}, got {declared!r} "
                                   f"(older runtimes reject newer versions, docs/cdi-rules.md#minimum-version)", POLICY)

    # kind (docs/cdi-rules.md#names)
    kind = spec.get("kind")
    if isinstance(kind, str):
        vendor, sl, class_ = kind.partition("/")
        if not sl:
            c.add(("kind",), f"invalid kind {kind!r}: must be vendor/class", GO)
        else:
            for part, what in ((vendor, "vendor"), (class_, "class")):
                if not is_go_vendor_or_class(part):
                    c.add(("kind",), f"invalid {what} {part!r} in kind {kind!r}: must start with a letter, "
                                     f"end with a letter or digit, and contain only A-Za-z0-9_.-", GO)
                elif strict and len(part) < 2:
                    c.add(("kind",), f"{what} {part!r} in kind {kind!r} must be at least 2 characters "
                                     f"(1-char names crash CDI libraries <= v1.1.0, PR #321)", POLICY)

    if "annotations" in spec:
        _check_annotations(c, spec["annotations"], ("annotations",))
    if "containerEdits" in spec and spec["containerEdits"] is not None:
        _check_edits(c, spec["containerEdits"], ("containerEdits",))

    devices = spec.get("devices")
    if isinstance(devices, list):
        if not devices:
            c.add(("devices",), "a spec must contain at least one device", GO)
        names: dict[str, int] = {}
        for i, d in enumerate(devices):
            p = ("devices", i)
            if not _check_keys(c, d, "device", p):
                continue
            name = d.get("name")
            if isinstance(name, str):
                if not is_go_device_name(name):
                    c.add(p + ("name",), f"invalid device name {name!r}: must start with a letter or digit, end "
                                         f"with a letter or digit, and contain only A-Za-z0-9_.:-", GO)
                elif strict and ":" in name:
                    c.add(p + ("name",), f"device name {name!r} must not contain ':' (not in SPEC, docs/cdi-rules.md#names)",
                          POLICY)
                if name in names:
                    c.add(p + ("name",), f"duplicate device name {name!r} (also devices[{names[name]}])", GO)
                else:
                    names[name] = i
            if "annotations" in d:
                _check_annotations(c, d["annotations"], p + ("annotations",))
            edits = d.get("containerEdits")
            if isinstance(edits, Mapping):
                if not any(edits.get(k) for k in ("env", "deviceNodes", "hooks", "mounts", "additionalGids",
                                                  "netDevices")) and edits.get("intelRdt") is None:
                    c.add(p + ("containerEdits",), "invalid device, empty device edits", GO)
                _check_edits(c, edits, p + ("containerEdits",))
    return c.issues


def validate_spec(spec: Any, *, strict: bool = True, source: str | None = None, schema: bool = True) -> None:
    """Validate a CDI JSON document (dict). Returns ``None``; raises :class:`CdiValidationError`
    listing every issue (``source``, e.g. a file name, is put in the message). ``schema``: see
    :func:`spec_issues`."""
    issues = spec_issues(spec, strict=strict, schema=schema)
    if issues:
        raise CdiValidationError(issues, source=source)


def validate_spec_file(path: str, *, strict: bool = True) -> dict[str, Any]:
    """Read (``.json``; ``.yaml`` via PyYAML), validate and return one spec file. Raises
    :class:`CdiValidationError` (also for unparsable content / duplicate JSON keys) or ``OSError``."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if path.endswith(".yaml"):
            import yaml

            spec = yaml.safe_load(raw)
        else:
            def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
                keys = [k for k, _ in pairs]
                dup = {k for k in keys if keys.count(k) > 1}
                if dup:
                    raise ValueError(f"duplicate keys {sorted(dup)}")
                return dict(pairs)

            spec = json.loads(raw, object_pairs_hook=no_dupes)
    except Exception as exc:  # ValueError, UnicodeDecodeError, yaml.YAMLError
        raise CdiValidationError(f"cannot parse: {exc}", source=path) from exc
    validate_spec(spec, strict=strict, source=path)
    return spec

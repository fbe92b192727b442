"""Reading the settings' sources before validation: the YAML file, env vars and flags, merged by
precedence (flag, env var, file, default) into the raw mapping that :mod:`dra_framework.config`
validates with pydantic.

Kept free of pydantic: ``dra-framework run`` reads the few settings its kubelet sockets need from
this raw mapping and serves them while pydantic is imported (docs/operations.md, "Start-up").
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .validation_errors import field_path

#: (flag, settings field, env var). Every Settings field except ``drivers`` is here.
FLAGS: list[tuple[str, str, str]] = [
    ("--node-name", "node_name", "NODE_NAME"),
    ("--kubelet-root-dir", "kubelet_root_dir", "DRA_FRAMEWORK_KUBELET_ROOT_DIR"),
    ("--cdi-root", "cdi_root", "DRA_FRAMEWORK_CDI_ROOT"),
    ("--state-dir", "state_dir", "DRA_FRAMEWORK_STATE_DIR"),
    ("--kubeconfig", "kubeconfig", "DRA_FRAMEWORK_KUBECONFIG"),
    ("--pod-uid", "pod_uid", "DRA_FRAMEWORK_POD_UID"),
    ("--api-qps", "api_qps", "DRA_FRAMEWORK_API_QPS"),
    ("--api-burst", "api_burst", "DRA_FRAMEWORK_API_BURST"),
    ("--metrics-port", "metrics_port", "DRA_FRAMEWORK_METRICS_PORT"),
    ("--healthz-port", "healthz_port", "DRA_FRAMEWORK_HEALTHZ_PORT"),
    ("--bind-address", "bind_address", "DRA_FRAMEWORK_BIND_ADDRESS"),
    ("--http-max-connections", "http_max_connections", "DRA_FRAMEWORK_HTTP_MAX_CONNECTIONS"),
    ("--http-timeout-seconds", "http_timeout_seconds", "DRA_FRAMEWORK_HTTP_TIMEOUT_SECONDS"),
    ("--health-resend-seconds", "health_resend_seconds", "DRA_FRAMEWORK_HEALTH_RESEND_SECONDS"),
    ("--janitor-interval-seconds", "janitor_interval_seconds", "DRA_FRAMEWORK_JANITOR_INTERVAL_SECONDS"),
    ("--slice-resync-seconds", "slice_resync_seconds", "DRA_FRAMEWORK_SLICE_RESYNC_SECONDS"),
]

#: Settings field → its YAML key (the pydantic alias; tests/foundation/test_config_source.py
#: checks that the two agree).
YAML_KEYS: dict[str, str] = {
    "node_name": "nodeName", "kubelet_root_dir": "kubeletRootDir", "cdi_root": "cdiRoot", "state_dir": "stateDir",
    "kubeconfig": "kubeconfig", "pod_uid": "podUID", "api_qps": "apiQPS", "api_burst": "apiBurst",
    "metrics_port": "metricsPort", "healthz_port": "healthzPort", "bind_address": "bindAddress",
    "http_max_connections": "httpMaxConnections", "http_timeout_seconds": "httpTimeoutSeconds",
    "health_resend_seconds": "healthResendSeconds", "janitor_interval_seconds": "janitorIntervalSeconds",
    "slice_resync_seconds": "sliceResyncSeconds",
}

#: s; the default and the largest value of ``healthResendSeconds`` (Settings.health_resend_seconds:
#: the kubelet times a health stream out after 30 s without a message).
DEFAULT_HEALTH_RESEND_SECONDS = 10.0
MAX_HEALTH_RESEND_SECONDS = 25

#: Settings keys holding paths: relative values are resolved against the config file's folder
#: (from the file) or the working directory (from a flag or env var).
PATH_KEYS = ("kubeletRootDir", "cdiRoot", "stateDir", "kubeconfig")

#: Deepest nesting accepted in a config file: real configs use < 10 levels; deeper input only
#: makes every later consumer (validation, JSON encoding, checkpoints) recurse.
MAX_DEPTH = 64


def _too_deep(value: Any) -> str | None:
    """The field path of the first value nested deeper than MAX_DEPTH, or None."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        v, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            return field_path(loc[:MAX_DEPTH]) + "..."
        if isinstance(v, dict):
            stack.extend((child, loc + (str(k),)) for k, child in v.items())
        elif isinstance(v, list):
            stack.extend((child, loc + (i,)) for i, child in enumerate(v))
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently,
    so a second ``drivers:`` would drop the first list)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _value in node.value:
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except (TypeError, yaml.YAMLError):
                    continue  # the base class reports unhashable keys
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


@dataclass
class RawConfig:
    """The merged, not yet validated settings: ``data`` keyed by YAML key, as
    :func:`dra_framework.config.validate_settings` takes it."""

    data: dict[str, Any]
    source: str                                            # the config file, or "settings"
    base: Path | None                                      # the config file's folder
    origin: dict[str, str] = field(default_factory=dict)   # YAML key → "env X" / "flag --x"


def read_config(config_file: str | Path | None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> RawConfig:
    """Read the YAML file, apply env vars then flag ``overrides`` (field name → value, None = not
    given). Relative paths from the file resolve against its folder, from flags and env vars
    against the working directory. Raises ConfigError for a file that cannot be read, is not
    YAML, is not a mapping or is nested more than MAX_DEPTH levels."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = str(config_file) if config_file else "settings"
    if config_file:
        try:
            with open(config_file, encoding="utf-8") as f:
                raw = yaml.load(f, Loader=_UniqueKeyLoader)  # a stream, so YAML errors name the file
        except OSError as exc:
            raise ConfigError(f"{config_file}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{config_file}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_file}: invalid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise ConfigError(f"{config_file}: invalid YAML: nested too deeply (at most "
                              f"{MAX_DEPTH} levels are accepted)") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{config_file}: <root>: must be a mapping, got {type(raw).__name__}")
        deep = _too_deep(raw)
        if deep is not None:
            raise ConfigError(f"{config_file}: {deep}: nested more than {MAX_DEPTH} levels deep")
        data = dict(raw)
    base = Path(config_file).resolve().parent if config_file else None
    for key in PATH_KEYS:  # relative paths in the file: against the file's folder
        value = data.get(key)
        if base is not None and isinstance(value, str) and value and not os.path.isabs(value):
            data[key] = str(base / value)
    flag_of = {name: flag for flag, name, _var in FLAGS}
    origin: dict[str, str] = {}
    for _flag, name, var in FLAGS:
        if env.get(var):
            data[YAML_KEYS[name]] = env[var]
            origin[YAML_KEYS[name]] = f"env {var}"
    for name, value in (overrides or {}).items():
        if value is not None:
            data[YAML_KEYS.get(name, name)] = value
            origin[YAML_KEYS.get(name, name)] = f"flag {flag_of.get(name, name)}"
    for key in PATH_KEYS:  # from flags and env: against the working directory, shown absolute
        if key in origin and isinstance(data.get(key), str) and data[key]:
            data[key] = os.path.abspath(data[key])
    return RawConfig(data, source, base, origin)

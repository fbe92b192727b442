"""Composed-driver configuration: one YAML file for all drivers of a node, plus flags and env.

Precedence, highest first: command-line flag, environment variable, config file, default. The
env var of a setting is ``DRA_FRAMEWORK_<FLAG>`` (``--kubelet-root-dir`` →
``DRA_FRAMEWORK_KUBELET_ROOT_DIR``) except ``--node-name``, which reads ``NODE_NAME`` as the
Downward API usually sets it. Errors name the field (``drivers[1].backends[0].options.hostRoot``).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .cdi.policy import CdiPolicy

if TYPE_CHECKING:
    from pydantic_core import InitErrorDetails
from .errors import ConfigError
from .kubenames import dns_subdomain_problem, is_driver_name
from .config_source import (  # noqa: F401 - FLAGS, MAX_DEPTH, PATH_KEYS: imported from here too
    DEFAULT_HEALTH_RESEND_SECONDS, FLAGS, MAX_HEALTH_RESEND_SECONDS, MAX_DEPTH, PATH_KEYS, RawConfig, read_config)
from .validation_errors import format_validation_error
from .paths import DEFAULT_CDI_ROOT, DEFAULT_KUBELET_ROOT, DEFAULT_STATE_DIR



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DeviceAttributeRule(_Strict):
    """``drivers[].backends[].deviceAttributes[]``: attributes an admin adds to devices (for
    example ``rack``). Discovered attributes always win; see ``dra_framework.admin_attributes``."""

    devices: list[str] = Field(default_factory=lambda: ["*"], description="Device name patterns (fnmatch).")
    pool: str | None = Field(None, description="Only devices of this backend pool (default: any).")
    attributes: dict[str, int | bool | str | dict[str, str]]

    @field_validator("attributes")
    @classmethod
    def _values(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if isinstance(value, dict) and set(value) != {"version"}:
                raise ValueError(f"{key}: a mapping value must be {{version: <semver>}}")
        return v


class BackendConfig(_Strict):
    """``drivers[].backends[]``: a backend type by name and its options (validated against the
    backend's own options model once plugins are loaded)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    device_attributes: list[DeviceAttributeRule] = Field(default_factory=list, alias="deviceAttributes")
    cdi_policy: CdiPolicy | None = Field(None, alias="cdiPolicy", description="What the backend's CDI edits may "
                                         "do; fields set here replace the backend's default (docs/cdi.md).")


class DriverConfig(_Strict):
    """``drivers[]``: one DRA driver (its own sockets, checkpoint, ResourceSlices and CDI kind)."""

    name: str = Field(description="DRA driver name, a DNS subdomain of at most 63 characters.")
    backends: list[BackendConfig] = Field(min_length=1)
    cdi_vendor: str | None = Field(None, alias="cdiVendor", description="CDI vendor; default k8s.<driver name>.")
    cdi_class: str = Field("claim", alias="cdiClass")

    @field_validator("name")
    @classmethod
    def _dns_subdomain(cls, v: str) -> str:
        if not is_driver_name(v):
            raise ValueError(f"{v!r} is not a DNS subdomain of at most 63 characters (ResourceSlice.spec.driver)")
        return v


class Settings(_Strict):
    """The node daemon's settings. Field aliases are the YAML keys."""

    node_name: str = Field("", alias="nodeName", description="The Kubernetes node this daemon serves "
                           "(discover/validate default to the host name).")
    kubelet_root_dir: Path = Field(Path(DEFAULT_KUBELET_ROOT), alias="kubeletRootDir",
                                   description="The kubelet's --root-dir (sockets, checkpoints).")
    cdi_root: Path = Field(Path(DEFAULT_CDI_ROOT), alias="cdiRoot", description="Directory of the CDI spec files.")
    state_dir: Path = Field(Path(DEFAULT_STATE_DIR), alias="stateDir",
                            description="Backends' private state (<stateDir>/<driver>/<backend>).")
    kubeconfig: str = Field("", description="Kubeconfig file of the API server; empty: in-cluster config.")
    pod_uid: str = Field("", alias="podUID", description="This pod's UID; enables rolling-update socket names.")
    # The kubelet's own client defaults: 200 claims of pods starting at once are fetched in ~2 s,
    # well inside the kubelet's 45 s call deadline (docs/config.md).
    api_qps: float = Field(50.0, alias="apiQPS", gt=0, description="API requests per second (client-side limit).")
    api_burst: int = Field(100, alias="apiBurst", gt=0, description="API requests allowed at once above apiQPS.")
    metrics_port: int = Field(0, alias="metricsPort", ge=0, le=65535,
                              description="Port of Prometheus /metrics; 0 disables.")
    healthz_port: int = Field(0, alias="healthzPort", ge=0, le=65535,
                              description="Port of /healthz and /readyz; 0 disables.")
    bind_address: str = Field("0.0.0.0", alias="bindAddress",
                              description="IP address the metrics and probe ports listen on.")
    http_max_connections: int = Field(32, alias="httpMaxConnections", ge=1, le=1024,
                                      description="Connections served at once per port; more are closed.")
    http_timeout_seconds: float = Field(5.0, alias="httpTimeoutSeconds", gt=0, le=60,
                                        description="Idle timeout of a metrics/probe connection.")
    health_resend_seconds: float = Field(DEFAULT_HEALTH_RESEND_SECONDS, alias="healthResendSeconds", gt=0,
                                         le=MAX_HEALTH_RESEND_SECONDS,
                                         description="Resend interval of the kubelet health stream (kubelet "
                                                     "times out at 30 s).")
    janitor_interval_seconds: float = Field(600.0, alias="janitorIntervalSeconds", gt=0,
                                            description="Seconds between rollbacks of interrupted prepares of "
                                                        "deleted claims.")
    slice_resync_seconds: float = Field(600.0, alias="sliceResyncSeconds", gt=0,
                                        description="Seconds between full ResourceSlice resyncs.")
    drivers: list[DriverConfig] = Field(default_factory=list)
    _source: str = PrivateAttr("settings")  # the config file, for error messages
    #: The config file's directory: relative paths in the file are resolved against it.
    _config_dir: Path | None = PrivateAttr(None)

    @field_validator("drivers")
    @classmethod
    def _unique_drivers(cls, v: list[DriverConfig]) -> list[DriverConfig]:
        seen: set[str] = set()
        for d in v:
            if d.name in seen:
                raise ValueError(f"driver {d.name!r} listed twice")
            seen.add(d.name)
        return v

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, v: str) -> str:
        # Node names are DNS-1123 subdomains; a wrong one would never match a Node or a slice.

        problem = dns_subdomain_problem(v) if v else None
        if problem:
            raise ValueError(f"{v!r} {problem}")
        return v

    @field_validator("bind_address")
    @classmethod
    def _ip(cls, v: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 or IPv6 address") from None
        return v

    @property
    def registry_dir(self) -> Path:
        return self.kubelet_root_dir / "plugins_registry"

    @property
    def plugins_dir(self) -> Path:
        return self.kubelet_root_dir / "plugins"


def load_settings(config_file: str | Path | None, overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None, require_node_name: bool = True) -> Settings:
    """Read the YAML file, apply env vars then flag ``overrides`` (field name → value, None = not
    given), and validate. Raises ConfigError naming the file and field."""
    return validate_settings(read_config(config_file, overrides, environ), require_node_name)


def validate_settings(raw: RawConfig, require_node_name: bool = True) -> Settings:
    """Validate the merged sources (:func:`dra_framework.config_source.read_config`). Raises
    ConfigError naming the file (or the flag or env var that set the value) and the field."""
    data, source, base, origin = raw.data, raw.source, raw.base, raw.origin
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            top = str(err["loc"][0]) if err["loc"] else ""
            where = origin.get(top, source)
            one = ValidationError.from_exception_data(exc.title, [cast("InitErrorDetails", err)])
            lines.append(format_validation_error(one, source=where,
                                                 model=Settings))
        raise ConfigError("\n".join(lines)) from None
    settings._source = source
    settings._config_dir = base
    check_drivers(settings, origin.get("kubeletRootDir", source))
    # A directory setting that names a file would only fail later, at every prepare or start-up.
    not_dirs = [f"{origin.get(key, source)}: {key}: {path} is not a directory"
                for key, path in (("kubeletRootDir", settings.kubelet_root_dir), ("cdiRoot", settings.cdi_root),
                                  ("stateDir", settings.state_dir))
                if os.path.lexists(path) and not os.path.isdir(path)]
    if not_dirs:
        raise ConfigError("\n".join(not_dirs))
    if not settings.node_name and not require_node_name:
        settings.node_name = socket.gethostname().lower()  # as the kubelet names its Node
    if not settings.node_name:
        raise ConfigError(f"{source}: nodeName: required (set --node-name, NODE_NAME or nodeName)")
    return settings


def driver_socket_paths(settings: Settings, driver: DriverConfig):
    """The sockets ``run`` will use for ``driver`` (``kubelet.sockets.SocketPaths``); ValueError
    when none fits."""
    from .kubelet.sockets import socket_paths

    return socket_paths(driver.name, str(settings.kubelet_root_dir), pod_uid=settings.pod_uid or None)


def cdi_kind(driver: DriverConfig) -> tuple[str, str]:
    """``(vendor, class)`` of the driver's CDI specs (vendor default ``k8s.<driver name>``)."""
    return driver.cdi_vendor or f"k8s.{driver.name}", driver.cdi_class


def _cdi_kind_problems(drivers: list[DriverConfig]) -> list[str]:
    """Two drivers must not share a CDI kind (their device IDs and spec files would be the same)
    nor a spec file prefix ``<vendor>-<class>_`` (``k8s.a``/``b-c`` and ``k8s.a-b``/``c`` name their
    files alike); vendors and classes never contain ``_``, so equal prefixes are the only way two
    kinds' file names meet (docs/config.md, "CDI spec files")."""
    from .cdi.errors import CdiValidationError
    from .cdi.names import spec_file_prefix, validate_class, validate_vendor

    out: list[str] = []
    by_kind: dict[str, str] = {}
    by_prefix: dict[str, str] = {}
    for i, d in enumerate(drivers):
        vendor, class_ = cdi_kind(d)
        field = "cdiVendor" if d.cdi_vendor else "cdiClass"
        try:
            validate_vendor(vendor)
        except CdiValidationError as exc:
            out.append(f"drivers[{i}].cdiVendor: {exc}")
            continue
        try:
            validate_class(class_)
        except CdiValidationError as exc:
            out.append(f"drivers[{i}].cdiClass: {exc}")
            continue
        kind, prefix = f"{vendor}/{class_}", spec_file_prefix(vendor, class_)
        if kind in by_kind:
            out.append(f"drivers[{i}].{field}: CDI kind {kind} of driver {d.name} is already used by driver "
                       f"{by_kind[kind]}; give each driver its own cdiVendor or cdiClass")
        elif prefix in by_prefix:
            out.append(f"drivers[{i}].{field}: CDI spec files of driver {d.name} ({prefix}*.json, kind {kind}) "
                       f"would have the same names as those of driver {by_prefix[prefix]}; choose another "
                       f"cdiVendor or cdiClass")
        by_kind.setdefault(kind, d.name)
        by_prefix.setdefault(prefix, d.name)
    return out


def check_drivers(settings: Settings, root_source: str = "") -> None:
    """Checks across fields that single-field validation cannot make: every driver gets socket
    paths that fit (docs/config.md, "Sockets") and that no other driver uses. Raises ConfigError
    naming the file (or the flag/env var of ``kubeletRootDir``) and the field."""
    src = settings._source
    problems: list[str] = []
    owner: dict[str, str] = {}
    problems += [f"{src}: {p}" for p in _cdi_kind_problems(settings.drivers)]
    for i, d in enumerate(settings.drivers):
        try:
            paths = driver_socket_paths(settings, d)
        except ValueError as exc:
            problems.append(f"{root_source or src}: kubeletRootDir: driver {d.name} (drivers[{i}]): {exc}")
            continue
        for p in (paths.registration, paths.dra):
            if p in owner:
                problems.append(f"{src}: drivers[{i}].name: socket {p} of driver {d.name} is also used by "
                                f"driver {owner[p]}")
            owner[p] = d.name
    if problems:
        raise ConfigError("\n".join(problems))

"""The opaque config ``TpuConfig`` (``tpu.dra-framework.io/v1alpha1``) for a host of a multi-host
slice (docs/tpu.md, "Multi-host slices")::

    {apiVersion: tpu.dra-framework.io/v1alpha1, kind: TpuConfig,
     workerId: 1, workerHostnames: [tpu-w-0, tpu-w-1, tpu-w-2, tpu-w-3]}

Decoded strictly (an unknown field is an error naming it); semantic errors start with the field.
"""
from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from dra_framework.api import OpaqueConfig

API_VERSION = "tpu.dra-framework.io/v1alpha1"


_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _host_problem(name: str) -> str | None:
    """None for an IP address or a lower-case DNS name (RFC 1123 subdomain, at most 253)."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if len(name) > 253 or not _DNS.match(name):
        return "not a lower-case DNS name (RFC 1123) or an IP address"
    return None


class TpuConfig(OpaqueConfig):
    """This host's place in a multi-host slice: ``workerId`` (0-based) and the hostnames or IPs
    of all workers in worker order (``TPU_WORKER_ID``, ``TPU_WORKER_HOSTNAMES``)."""

    api_version = API_VERSION
    kind = "TpuConfig"
    worker_id: int = Field(alias="workerId", ge=0)
    worker_hostnames: list[str] = Field(alias="workerHostnames", min_length=1)

    @field_validator("worker_hostnames")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            problem = _host_problem(name)
            if problem:
                raise ValueError(f"workerHostnames[{i}]: {name!r} is {problem}")
        if len(set(v)) != len(v):
            raise ValueError("workerHostnames: a worker is listed twice")
        return v

    @model_validator(mode="after")
    def _in_range(self) -> "TpuConfig":
        if self.worker_id >= len(self.worker_hostnames):
            raise ValueError(f"workerId: {self.worker_id} is not an index into workerHostnames "
                             f"({len(self.worker_hostnames)} workers)")
        return self


def check_for_device(config: TpuConfig, hosts: int, device: str) -> None:
    """ValueError (naming the field) when the slice of ``device`` has not ``hosts`` hosts."""
    if len(config.worker_hostnames) != hosts:
        raise ValueError(f"workerHostnames: device {device!r} is one host of a {hosts}-host slice, "
                         f"the config lists {len(config.worker_hostnames)} workers")

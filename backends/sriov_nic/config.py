"""Opaque config ``VfConfig`` (``apiVersion: sriovnic.dra-framework.io/v1alpha1``), decoded
strictly by the framework. A DeviceClass config gives admin defaults and a claim config
overrides them field by field: only the fields a config sets count (:func:`effective`)."""
from __future__ import annotations

import re
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from dra_framework.api import OpaqueConfig

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
#: Linux interface names: 1-15 bytes, no '/', ':' or whitespace (dev_valid_name in net/core/dev.c).
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")


class VfConfig(OpaqueConfig):
    """How a VF is handed to the container.

    - ``driver``: ``keep`` (as it is bound now), ``vfio-pci`` (DPDK, VMs: ``/dev/vfio/<group>``),
      ``default`` (the VF's kernel netdev driver, e.g. back from vfio-pci).
    - ``ifName``: the VF's interface name inside the container (kernel driver only; default:
      its name on the host, unique on the node, so VFs of several claims in one pod never clash).
    - ``mac``, ``vlan`` (0-4094, 0 = untagged), ``trust``, ``spoofChk``: set through the PF.
    - ``mtu``: set on the VF netdev before it moves into the pod (kernel driver only).
    - ``vhost``: also add ``/dev/vhost-net`` and ``/dev/net/tun``.
    - ``rdma``: add the VF's RDMA character devices (default: when it has an RDMA device);
      ``true`` on a VF without one fails the claim.
    """

    api_version = "sriovnic.dra-framework.io/v1alpha1"
    kind = "VfConfig"

    driver: Literal["keep", "vfio-pci", "default"] = "keep"
    if_name: str | None = Field(None, alias="ifName")
    mac: str | None = None
    vlan: int | None = Field(None, ge=0, le=4094)
    mtu: int | None = Field(None, ge=68, le=65535)
    trust: bool | None = None
    spoof_chk: bool | None = Field(None, alias="spoofChk")
    vhost: bool = False
    rdma: bool | None = None

    @field_validator("if_name")
    @classmethod
    def _ifname(cls, v: str | None) -> str | None:
        if v is not None and (not _IFNAME.match(v) or v in (".", "..")):
            raise ValueError(f"{v!r} is not a Linux interface name (1-15 characters, no '/', ':' or spaces)")
        return v

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.lower()
        if not _MAC.match(v):
            raise ValueError(f"{v!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        if int(v[:2], 16) & 1 or v == "00:00:00:00:00:00":
            raise ValueError(f"{v!r} is a multicast or zero address; a VF needs a unicast one")
        return v


def effective(configs: Sequence[Any]) -> dict[str, Any]:
    """The merged settings (python field names) of ``configs``, lowest precedence first: each
    config overrides only the fields it sets. Configs of other types are ignored."""
    out: dict[str, Any] = {name: f.default for name, f in VfConfig.model_fields.items()}
    for c in configs:
        if isinstance(c, VfConfig):
            for name in c.model_fields_set:
                out[name] = getattr(c, name)
    return out

"""Options of the ``sriov_nic`` backend (``drivers[].backends[].options``) and the VF selection
vocabulary of the SR-IOV network device plugin
(https://github.com/k8snetworkplumbingwg/sriov-network-device-plugin#device-selectors)."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dra_framework.api import BaseOptions, CdiPolicy, normalize_bdf

HEX4 = re.compile(r"^[0-9a-f]{4}$")
#: The highest VF index a PF can have: TotalVFs is a 16-bit field of the SR-IOV capability
#: (PCIe Base Specification, SR-IOV Extended Capability; Linux ``sriov_totalvfs``).
MAX_VF_INDEX = 65534
#: ``ens1f0`` or ``ens1f0#0-3,5``: a PF netdev name, optionally with VF index ranges.
PF_NAME = re.compile(r"^(?P<pf>[^#\s/]{1,15})(?:#(?P<ranges>\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*))?$")

#: Kernel (netdev) driver of common VF ids, used by ``driver: default`` and to tell an unexpected
#: binding from the VF's own driver. Ids as in pci.ids.
KERNEL_DRIVERS = {
    "8086:1889": "iavf",       # Intel E800 series Adaptive Virtual Function
    "8086:154c": "iavf",       # Intel X710/XL710 VF
    "8086:10ed": "ixgbevf",    # Intel 82599 VF
    "15b3:101e": "mlx5_core",  # NVIDIA ConnectX Family mlx5Gen Virtual Function (CX-5 Ex .. CX-7)
    "15b3:1016": "mlx5_core",  # ConnectX-4 Lx VF
    "15b3:1018": "mlx5_core",  # ConnectX-5 VF
}


def vf_ranges(spec: str) -> tuple[str, set[int] | None]:
    """``ens1f0#0-3,5`` → (``ens1f0``, {0, 1, 2, 3, 5}); ``ens1f0`` → (``ens1f0``, None: all VFs).
    Raises ValueError naming the entry when it is malformed or a range is reversed."""
    m = PF_NAME.match(spec)
    if not m:
        raise ValueError(f"pfNames entry {spec!r}: expected <pf netdev> or <pf netdev>#<first>-<last>[,...]")
    if m["ranges"] is None:
        return m["pf"], None
    out: set[int] = set()
    for part in m["ranges"].split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise ValueError(f"pfNames entry {spec!r}: range {part} is reversed")
        if b > MAX_VF_INDEX:  # else a typo like 0-999999999 makes a huge set and discovery hangs
            raise ValueError(f"pfNames entry {spec!r}: VF index {b} is above {MAX_VF_INDEX} "
                             "(TotalVFs in the PCIe SR-IOV capability is a 16-bit count)")
        out.update(range(a, b + 1))
    return m["pf"], out


class Selector(BaseModel):
    """One entry of ``selectors``. A VF is selected when every field that is set matches (a list
    matches when any entry does); ``selectors`` as a whole matches when any entry does."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    vendors: list[str] = Field(default_factory=list, description="VF vendor ids (hex, '8086').")
    devices: list[str] = Field(default_factory=list, description="VF device ids (hex, '1889').")
    drivers: list[str] = Field(default_factory=list, description="Drivers the VF is bound to now ('iavf', 'vfio-pci').")
    pf_names: list[str] = Field(default_factory=list, alias="pfNames",
                                description="PF netdev names, optionally with VF ranges: 'ens1f0#0-3'.")
    pf_pci_addresses: list[str] = Field(default_factory=list, alias="pfPciAddresses", description="PF PCI addresses.")
    pci_addresses: list[str] = Field(default_factory=list, alias="pciAddresses", description="VF PCI addresses.")
    link_types: list[Literal["ethernet", "infiniband"]] = Field(default_factory=list, alias="linkTypes")
    rdma: bool | None = Field(None, description="true: only VFs with an RDMA device; false: only VFs without.")

    @field_validator("vendors", "devices")
    @classmethod
    def _hex(cls, v: list[str]) -> list[str]:
        out = [x.lower().removeprefix("0x") for x in v]
        for x in out:
            if not HEX4.match(x):
                raise ValueError(f"{x!r} is not a 4-digit hex PCI id")
        return out

    @field_validator("pf_names")
    @classmethod
    def _pf_names(cls, v: list[str]) -> list[str]:
        for x in v:
            vf_ranges(x)
        return v

    @field_validator("pci_addresses", "pf_pci_addresses")
    @classmethod
    def _bdfs(cls, v: list[str]) -> list[str]:
        return [normalize_bdf(x) for x in v]


class SriovNicOptions(BaseOptions):
    """All keys camelCase in YAML. Nothing is offered unless ``selectors`` selects it, so a
    management NIC never becomes allocatable by accident."""

    selectors: list[Selector] = Field(default_factory=list, description="Which VFs are offered (any entry matches).")
    kernel_drivers: dict[str, str] = Field(default_factory=lambda: dict(KERNEL_DRIVERS), alias="kernelDrivers",
                                           description="'vendor:device' of a VF -> its kernel netdev driver.")
    netlink: Literal["pyroute2", "fake"] = Field(
        "pyroute2", description="How VF properties are set through the PF: pyroute2 (rtnetlink, the node's network "
        "namespace: run with hostNetwork) or fake (<hostRoot>/fake-netlink.json, for sample hosts).")
    hotplug: bool = Field(True, description="Rediscover on udev pci/net events (sriov_numvfs changed, VFs added "
                          "or removed).")
    health_interval: float = Field(5.0, alias="healthIntervalSeconds", gt=0,
                                   description="How often PF link state is checked (seconds).")
    netdev_wait: float = Field(5.0, alias="netdevWaitSeconds", ge=0,
                               description="How long prepare waits for a VF's netdev after binding its kernel driver.")

    @field_validator("kernel_drivers")
    @classmethod
    def _ids(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for k, d in v.items():
            vid, _, did = k.lower().partition(":")
            if not (HEX4.match(vid) and HEX4.match(did)):
                raise ValueError(f"{k!r}: expected 'vendor:device' in hex ('8086:1889')")
            out[f"{vid}:{did}"] = d
        return out

    def default_cdi_policy(self) -> CdiPolicy:
        """VFIO group nodes, RDMA character devices, vhost-net and tun; ``SRIOVNIC_*`` env."""
        return CdiPolicy.model_validate({"deviceNodes": ["/dev/vfio", "/dev/infiniband", "/dev/vhost-net", "/dev/net/tun"],
                                         "env": ["SRIOVNIC_*"]})

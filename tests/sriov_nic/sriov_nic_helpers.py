"""Helpers for the sriov_nic tests: the sample hosts written by their generator scripts, a
backend on them, and a netlink fake that records what the journal held at each call."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from dra_framework.api import (AllocatedDevice, BackendContext, ClaimInfo, Inventory, PrepareContext, StoredClaim)

from dra_backends.sriov_nic.backend import SriovNicBackend
from dra_backends.sriov_nic.config import VfConfig
from dra_backends.sriov_nic.netlink import FakeNetlink
from dra_backends.sriov_nic.options import SriovNicOptions

REPO = Path(__file__).resolve().parents[2]
DRIVER = "sriovnic.dra-framework.io"
HOSTS = {"e810": "sriov_e810.py", "cx6dx": "sriov_cx6dx.py", "dgx": "dgx_h100_cx7.py"}


def host_module(kind: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"host_{kind}", REPO / "examples/hosts" / HOSTS[kind])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_host(kind: str, root: Path) -> Path:
    return Path(host_module(kind).build(root))


class JournalNetlink(FakeNetlink):
    """FakeNetlink that also notes, for each change, the journal as it was when the change ran."""

    def __init__(self, host_root: Path) -> None:
        super().__init__(host_root)
        self.ctx: PrepareContext | None = None
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def set_vf(self, pf: str, vf: int, settings: dict[str, Any]) -> None:
        self.calls.append(("set_vf", (pf, vf, dict(settings)), dict(self.ctx.journal) if self.ctx else {}))
        super().set_vf(pf, vf, settings)

    def set_mtu(self, ifname: str, mtu: int) -> None:
        self.calls.append(("set_mtu", (ifname, mtu), dict(self.ctx.journal) if self.ctx else {}))
        super().set_mtu(ifname, mtu)


def backend(root: Path, selectors: list[dict[str, Any]] | None = None, **opts: Any) -> SriovNicBackend:
    options = SriovNicOptions.model_validate({"hostRoot": str(root), "hotplug": False, "netlink": "fake",
                                              "netdevWaitSeconds": 0.2,
                                              "selectors": selectors if selectors is not None else [{}], **opts})
    ctx = BackendContext(driver_name=DRIVER, node_name="n", host_root=root, state_dir=root / ".state",
                         cdi_root=root / ".cdi", backend_name="sriov-nic", logger=logging.getLogger("sriov-nic-test"))
    return SriovNicBackend(options, ctx, netlink=JournalNetlink(root))


def discover(b: SriovNicBackend) -> dict[str, Any]:
    inv = Inventory()
    b.dra_discover(inv)
    return {d.name: d for p in inv.pools for d in p.devices}


def vf_config(**fields: Any) -> VfConfig:
    return VfConfig.model_validate(fields)


def allocated(devices: dict[str, Any], name: str, *configs: VfConfig, admin: bool = False) -> AllocatedDevice:
    return AllocatedDevice(request="nic", pool="n", device=devices[name], configs=list(configs), admin_access=admin)


def claim_ctx(b: SriovNicBackend, uid: str = "uid-1") -> PrepareContext:
    ctx = PrepareContext(ClaimInfo(uid, "default", "c"))
    b.netlink.ctx = ctx
    return ctx


def stored(ctx: PrepareContext, completed: bool = True, physically_prepared: bool = True) -> StoredClaim:
    return StoredClaim(ctx.claim, completed, journal=dict(ctx.journal), physically_prepared=physically_prepared)

"""VF properties set through the PF over rtnetlink, behind a small replaceable interface.

A VF's MAC address, VLAN, trust and spoof checking belong to the PF's embedded switch and are set
on the PF (``ip link set <pf> vf <n> mac ... vlan ... trust on spoofchk off``, the kernel's
``IFLA_VFINFO_LIST``): this works whichever network namespace the VF's own netdev is in, or when
it has none (vfio-pci). The MTU is a property of the VF netdev itself and is set while it is
still in the host's namespace.

:class:`Pyroute2Netlink` talks to the kernel (https://docs.pyroute2.org/iproute.html); the driver
must run in the host's network namespace (``hostNetwork: true``). :class:`FakeNetlink` keeps the
same state in ``<hostRoot>/fake-netlink.json`` (and the MTU in the netdev's sysfs ``mtu`` file),
logging each call to ``fake-netlink.jsonl``: sample hosts and tests use it, also for a daemon
running as a subprocess.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Protocol

#: VF settings this backend changes and restores, as ``ip link`` names them.
VF_KEYS = ("mac", "vlan", "trust", "spoofchk")


class LinkGone(LookupError):
    """The PF netdev, the VF or the netdev does not exist (any more): nothing to change or undo."""


class VfNetlink(Protocol):
    """What the backend needs from rtnetlink. Values: ``mac`` str (``aa:bb:..``), ``vlan`` int
    (0 = none), ``trust``/``spoofchk`` bool. Raises :class:`LinkGone` for a missing link."""

    def vf_state(self, pf: str, vf: int) -> dict[str, Any]: ...

    def set_vf(self, pf: str, vf: int, settings: dict[str, Any]) -> None: ...

    def mtu(self, ifname: str) -> int: ...

    def set_mtu(self, ifname: str, mtu: int) -> None: ...


class Pyroute2Netlink:
    """The kernel's rtnetlink through pyroute2's IPRoute (one socket per call: calls are rare)."""

    def _ipr(self) -> Any:
        from pyroute2 import IPRoute
        return IPRoute()

    @staticmethod
    def _index(ipr: Any, ifname: str) -> int:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise LinkGone(f"no network interface {ifname!r} in this network namespace")
        return int(idx[0])

    def vf_state(self, pf: str, vf: int) -> dict[str, Any]:
        with self._ipr() as ipr:
            msg = ipr.link("get", index=self._index(ipr, pf), ext_mask=1)[0]  # RTEXT_FILTER_VF
            vflist = msg.get_attr("IFLA_VFINFO_LIST")
            for info in (vflist.get_attrs("IFLA_VF_INFO") if vflist is not None else []):
                mac = info.get_attr("IFLA_VF_MAC")
                if mac is None or int(mac["vf"]) != vf:
                    continue
                vlan, trust, spoof = (info.get_attr(k) for k in ("IFLA_VF_VLAN", "IFLA_VF_TRUST", "IFLA_VF_SPOOFCHK"))
                return {"mac": mac["mac"], "vlan": int(vlan["vlan"]) if vlan else 0,
                        "trust": bool(trust and trust["trust"] == 1), "spoofchk": bool(spoof and spoof["spoofchk"] == 1)}
        raise LinkGone(f"{pf} has no VF {vf}")

    def set_vf(self, pf: str, vf: int, settings: dict[str, Any]) -> None:
        spec: dict[str, Any] = {"vf": vf}
        for k, v in settings.items():
            spec[k] = int(v) if isinstance(v, bool) else v
        with self._ipr() as ipr:
            try:
                ipr.link("set", index=self._index(ipr, pf), vf=spec)
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.ENOENT):
                    raise LinkGone(f"{pf} vf {vf}: {exc}") from exc
                raise

    def mtu(self, ifname: str) -> int:
        with self._ipr() as ipr:
            return int(ipr.link("get", index=self._index(ipr, ifname))[0].get_attr("IFLA_MTU"))

    def set_mtu(self, ifname: str, mtu: int) -> None:
        with self._ipr() as ipr:
            ipr.link("set", index=self._index(ipr, ifname), mtu=mtu)


class FakeNetlink:
    """File-backed stand-in for sample hosts: ``fake-netlink.json`` = ``{"vfs": {"<pf>": {"<n>":
    {mac, vlan, trust, spoofchk}}}}``; MTUs in ``sys/class/net/<if>/mtu``; every call appended
    to ``fake-netlink.jsonl``."""

    def __init__(self, host_root: Path) -> None:
        self.root = Path(host_root)
        self.state = self.root / "fake-netlink.json"
        self.log = self.root / "fake-netlink.jsonl"

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("vfs", {})
        return data

    def _note(self, op: str, **kw: Any) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps({"op": op, **kw}, sort_keys=True) + "\n")

    def _netdev(self, ifname: str) -> Path:
        d = self.root / "sys/class/net" / ifname
        if not d.exists():
            raise LinkGone(f"no network interface {ifname!r}")
        return d

    def vf_state(self, pf: str, vf: int) -> dict[str, Any]:
        self._netdev(pf)
        try:
            return dict(self._load()["vfs"][pf][str(vf)])
        except KeyError:
            raise LinkGone(f"{pf} has no VF {vf}") from None

    def set_vf(self, pf: str, vf: int, settings: dict[str, Any]) -> None:
        self._netdev(pf)
        data = self._load()
        cur = data["vfs"].get(pf, {}).get(str(vf))
        if cur is None:
            raise LinkGone(f"{pf} has no VF {vf}")
        cur.update(settings)
        self._note("set_vf", pf=pf, vf=vf, settings=settings)
        tmp = self.state.with_name(f".{self.state.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state)

    def mtu(self, ifname: str) -> int:
        return int((self._netdev(ifname) / "mtu").read_text().strip() or 1500)

    def set_mtu(self, ifname: str, mtu: int) -> None:
        f = self._netdev(ifname) / "mtu"
        self._note("set_mtu", ifname=ifname, mtu=mtu)
        f.write_text(f"{mtu}\n")


def make_netlink(kind: str, host_root: Path) -> VfNetlink:
    return FakeNetlink(host_root) if kind == "fake" else Pyroute2Netlink()

"""PluginServer: the kubelet-facing sockets of one DRA driver instance.

Two gRPC servers (:mod:`.transport`) on unix sockets (docs/operations.md):
  * registration socket (pluginregistration.Registration), watched by the
    kubelet's plugin watcher;
  * DRA socket: DRAPlugin v1 + v1beta1 and DRAResourceHealth v1 + v1alpha1.
The DRA socket listens before the registration socket appears, so the
endpoint that GetInfo advertises is always reachable.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from typing import TYPE_CHECKING

from ._proto import (
    dra_health_v1_pb2,
    dra_health_v1alpha1_pb2,
    dra_v1_pb2,
    dra_v1beta1_pb2,
    pluginregistration_v1_pb2 as reg_pb2,
)
from ..fsutil import PLUGIN_DIR_MODE, SOCKET_MODE, make_dirs
from .servicers import (
    DRA_V1,
    DRA_V1BETA1,
    HEALTH_V1,
    HEALTH_V1ALPHA1,
    PLUGIN_TYPE,
    DRAServicer,
    HealthServicer,
    RegistrationServicer,
    RegistrationStatus,
)
from .sockets import (DEFAULT_KUBELET_ROOT, SocketPaths, forget_sockets, record_sockets, remove_socket,
                      remove_stale_sockets, socket_paths)
from .transport import GrpcServer
from .types import DRAEngine

if TYPE_CHECKING:  # .health imports the backend model: not needed to answer GetInfo at start-up
    from .health import HealthState

log = logging.getLogger(__name__)

# s; well under the kubelet's 30 s timeout (docs/protocol.md#health-stream)
DEFAULT_HEALTH_RESEND_INTERVAL = 10.0


class RegistrationError(RuntimeError):
    """Registration did not succeed in time; the message says why."""


class PluginServer:
    """Serves one DRA driver to the kubelet.

    driver: DRA driver name (ResourceSlice.spec.driver).
    engine: DRAEngine for NodePrepareResources/NodeUnprepareResources.
    health: HealthState, or None when the driver has no health source; then
        no health service is advertised (unless advertise_health) and streams get UNIMPLEMENTED.
    kubelet_root / registry_dir / plugin_dir / pod_uid: see sockets.socket_paths.
    health_resend_interval: seconds between full health resends.
    advertise_health: advertise the health service even without ``health`` (the daemon does,
        since GetInfo is answered before it knows; docs/protocol.md#registration).
    starting: ``engine`` is a placeholder until :meth:`attach`; health streams opened
        before then wait for it (docs/operations.md, "Start-up").
    """

    def __init__(self, driver: str, engine: DRAEngine, *, health: HealthState | None = None,
                 kubelet_root: str = DEFAULT_KUBELET_ROOT, registry_dir: str | None = None,
                 plugin_dir: str | None = None, pod_uid: str | None = None,
                 health_resend_interval: float = DEFAULT_HEALTH_RESEND_INTERVAL,
                 stop_grace: float = 5.0, advertise_health: bool = False, starting: bool = False) -> None:
        if health_resend_interval <= 0:
            raise ValueError("health_resend_interval must be > 0 seconds")
        self.driver = driver
        self.engine = engine
        self.health = health
        self.paths: SocketPaths = socket_paths(driver, kubelet_root, pod_uid=pod_uid,
                                               registry_dir=registry_dir, plugin_dir=plugin_dir)
        self.health_resend_interval = health_resend_interval
        self.stop_grace = stop_grace
        self.advertise_health = advertise_health
        self._attached = asyncio.Event()
        if not starting:
            self._attached.set()
        self._dra_servicers: list[DRAServicer] = []
        self._closing = asyncio.Event()
        self._reg_server: GrpcServer | None = None
        self._dra_server: GrpcServer | None = None
        self._health_servicers: list[HealthServicer] = []
        self._owned: dict[str, tuple[int, int] | None] = {}  # socket path -> (dev, inode) we bound
        self._recorded = False  # our sockets-*.txt record exists
        self._registration = RegistrationServicer(reg_pb2.PluginInfo(
            type=PLUGIN_TYPE, name=driver, endpoint=self.paths.dra,
            supported_versions=self.supported_versions))

    @property
    def supported_versions(self) -> list[str]:
        """GetInfo.supported_versions, in preference order (docs/protocol.md#registration)."""
        versions = [DRA_V1, DRA_V1BETA1]
        if self.health is not None or self.advertise_health:
            versions += [HEALTH_V1, HEALTH_V1ALPHA1]
        return versions

    # --- readiness ---------------------------------------------------------

    @property
    def registration_status(self) -> RegistrationStatus | None:
        """Last NotifyRegistrationStatus, or None if the kubelet sent none."""
        return self._registration.status

    @property
    def registered(self) -> bool:
        s = self._registration.status
        return bool(s and s.registered)

    @property
    def contacted(self) -> bool:
        """True once the kubelet has called GetInfo."""
        return self._registration.get_info_calls > 0

    async def wait_registered(self, timeout: float) -> RegistrationStatus:
        """Wait until the kubelet reports plugin_registered=true.

        Raises RegistrationError after `timeout` seconds, telling apart: never
        contacted (naming the watched directory), rejected with the kubelet's
        reason, rejected without one. A rejection is not final,
        so it keeps waiting until the timeout (docs/protocol.md#registration).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.registered:
            left = deadline - loop.time()
            if left <= 0:
                raise RegistrationError(self._registration_problem())
            self._registration.changed.clear()
            try:
                await asyncio.wait_for(self._registration.changed.wait(), left)
            except TimeoutError:
                pass
        status = self._registration.status
        assert status is not None  # self.registered
        return status

    def _registration_problem(self) -> str:
        s = self._registration.status
        if s is not None and not s.registered:
            if s.error:
                return f"kubelet rejected DRA driver {self.driver}: {s.error!r}"
            return f"kubelet rejected DRA driver {self.driver} without giving a reason"
        if not self.contacted:
            return (f"kubelet never contacted DRA driver {self.driver}: is it watching "
                    f"{self.paths.registry_dir} (registration socket {self.paths.registration})? "
                    "Check the kubelet --root-dir")
        return f"kubelet called GetInfo for DRA driver {self.driver} but sent no registration status"

    # --- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Listen on the DRA socket, then on the registration socket.

        Removes stale sockets first. The registry
        directory must exist (the kubelet creates it; creating it ourselves
        would hide a wrong kubelet root); the plugin directory is created.
        Raises FileNotFoundError, ValueError or OSError (bind failure).
        """
        if self._dra_server is not None:
            raise RuntimeError("PluginServer already started")
        if not await asyncio.to_thread(os.path.isdir, self.paths.registry_dir):
            raise FileNotFoundError(f"kubelet plugin registry directory {self.paths.registry_dir} does not exist")
        make_dirs(self.paths.plugin_dir, PLUGIN_DIR_MODE, own=True)
        make_dirs(os.path.dirname(self.paths.dra), PLUGIN_DIR_MODE)  # the short-name fallback's dir
        remove_stale_sockets(self.paths, self.driver)
        self._closing.clear()

        self._dra_servicers = [DRAServicer(self.engine, "v1"), DRAServicer(self.engine, "v1beta1")]
        # Health is served even without a source: older kubelets (1.34-1.36)
        # open streams regardless, and get a clean UNIMPLEMENTED.
        self._health_servicers = [
            HealthServicer(self.health, v, self.health_resend_interval, self._closing, self._attached)
            for v in ("v1", "v1alpha1")
        ]
        dra = GrpcServer([
            (self._dra_servicers[0], dra_v1_pb2.DESCRIPTOR.services_by_name["DRAPlugin"]),
            (self._dra_servicers[1], dra_v1beta1_pb2.DESCRIPTOR.services_by_name["DRAPlugin"]),
            (self._health_servicers[0], dra_health_v1_pb2.DESCRIPTOR.services_by_name["DRAResourceHealth"]),
            (self._health_servicers[1], dra_health_v1alpha1_pb2.DESCRIPTOR.services_by_name["DRAResourceHealth"]),
        ])
        await dra.start(self.paths.dra, SOCKET_MODE)
        self._dra_server = dra
        self._owned[self.paths.dra] = _inode(self.paths.dra)

        reg = GrpcServer([(self._registration, reg_pb2.DESCRIPTOR.services_by_name["Registration"])])
        try:
            await reg.start(self.paths.registration, SOCKET_MODE)
        except BaseException:
            await self._stop_dra()
            raise
        self._reg_server = reg
        self._owned[self.paths.registration] = _inode(self.paths.registration)
        try:
            record_sockets(self.paths)
            self._recorded = True
        except OSError as exc:  # only the cleanup after a crash needs it
            log.warning("cannot record the socket paths in %s: %s", self.paths.plugin_dir, exc)
        # Served before the config is validated: said at INFO once the driver is attached, so a
        # refused config's error is not buried under socket lines.
        self._log_serving(logging.DEBUG if not self._attached.is_set() else logging.INFO)

    def _log_serving(self, level: int) -> None:
        log.log(level, "DRA driver %s: registration %s, service %s, advertising %s", self.driver,
                self.paths.registration, self.paths.dra, self.supported_versions)

    def attach(self, engine: DRAEngine, health: HealthState | None) -> None:
        """Serve ``engine`` and ``health`` from now on (a server made with ``starting=True``):
        later calls go straight to ``engine``; health streams that waited start streaming, or
        answer UNIMPLEMENTED without ``health``."""
        self.engine, self.health = engine, health
        for d in self._dra_servicers:
            d.engine = engine
        for h in self._health_servicers:
            h.state = health
        self._attached.set()
        if self._reg_server is not None:
            self._log_serving(logging.INFO)

    async def stop(self) -> None:
        """Stop serving and remove both sockets.

        Order: end health streams (an instance going away must stop its
        stream before it deregisters), remove the registration
        socket (deregisters), then let in-flight DRA calls finish within
        `stop_grace` seconds and remove the DRA socket. Idempotent.
        """
        self._closing.set()
        for h in self._health_servicers:
            h.wake_all()
        # Wait (briefly) until the streams have really ended, not only been asked to.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.gather(*(h.wait_closed() for h in self._health_servicers))
        if self._reg_server is not None:
            reg, self._reg_server = self._reg_server, None
            await reg.stop(None)
        self._remove_own(self.paths.registration)
        await self._stop_dra()
        if self._recorded and not self._owned:
            self._recorded = False
            forget_sockets(self.paths)

    async def _stop_dra(self) -> None:
        if self._dra_server is not None:
            dra, self._dra_server = self._dra_server, None
            await dra.stop(self.stop_grace)
        self._remove_own(self.paths.dra)

    def _remove_own(self, path: str) -> None:
        """Remove a socket only if it is the one this server bound: one that never started (it
        found a live instance) or whose path was taken over must not delete another's socket."""
        ino = self._owned.pop(path, None)
        if ino is not None and _inode(path) in (ino, None):  # gRPC may have unlinked it already
            _remove_quietly(path)

    def socket_ids(self) -> tuple[tuple[int, int] | None, ...]:
        """(device, inode) of the registration and DRA socket paths, None where no socket is:
        a change means someone removed or replaced them."""
        return tuple(_inode(p) if _is_socket(p) else None for p in (self.paths.registration, self.paths.dra))

    async def __aenter__(self) -> "PluginServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove_quietly(path: str) -> None:
    try:
        remove_socket(path)
    except OSError as exc:
        log.warning("could not remove socket %s: %s", path, exc)

"""A kubelet-like async client for checking a DRA driver's sockets.

Mirrors what the kubelet does (docs/protocol.md): find the
registration socket, GetInfo within 1 s, validate type/name/services, dial
the endpoint, optionally NotifyRegistrationStatus; then Prepare/Unprepare
(45 s deadline) and NodeWatchResources. Functions return plain dataclasses
so a CLI only has to print them. gRPC failures raise grpc.aio.AioRpcError;
validation failures raise KubeletCheckError.
"""
from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from ._proto import (
    dra_health_v1_pb2_grpc,
    dra_health_v1alpha1_pb2_grpc,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2 as reg_pb2,
    pluginregistration_v1_pb2_grpc as reg_grpc,
)
from .servicers import DRA_PB, DRA_V1, DRA_V1BETA1, HEALTH_PB, HEALTH_V1, HEALTH_V1ALPHA1, PLUGIN_TYPE
from .sockets import socket_paths
from .types import CALL_TIMEOUT, ClaimRef, PrepareOutcome, PreparedDevice

if TYPE_CHECKING:  # .health imports the backend model: `dra-framework` parses its flags without it
    from .health import DeviceHealth

# Kubelet timeouts (docs/protocol.md#registration, #prepare-and-unprepare).
DIAL_TIMEOUT = 10.0
GET_INFO_TIMEOUT = 1.0
NOTIFY_TIMEOUT = 5.0

# The kubelet's own preference lists (1.34+ DRA; 1.37 health).
KUBELET_DRA_SERVICES = (DRA_V1, DRA_V1BETA1)
KUBELET_HEALTH_SERVICES = (HEALTH_V1, HEALTH_V1ALPHA1)
_SERVICE_VERSION = {DRA_V1: "v1", DRA_V1BETA1: "v1beta1", HEALTH_V1: "v1", HEALTH_V1ALPHA1: "v1alpha1"}


class KubeletCheckError(Exception):
    """The plugin would be rejected (or not found) by a kubelet."""


@dataclass
class RegisterCheckResult:
    """Outcome of `register_check`; `dra_version`/`health_version` are the
    API versions a 1.37 kubelet would pick ("v1", "v1beta1", "v1alpha1")."""

    registration_socket: str
    type: str
    name: str
    endpoint: str
    supported_versions: list[str]
    dra_service: str
    dra_version: str
    health_service: str | None
    health_version: str | None
    endpoint_reachable: bool
    notified: bool = False
    warnings: list[str] = field(default_factory=list)


def _channel(path: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"unix:{path}")


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


async def get_info(registration_socket: str) -> reg_pb2.PluginInfo:
    """Call GetInfo on one registration socket with the kubelet's 1 s limit."""
    async with _channel(registration_socket) as ch:
        return await reg_grpc.RegistrationStub(ch).GetInfo(reg_pb2.InfoRequest(), timeout=GET_INFO_TIMEOUT)


async def find_registration_socket(kubelet_root: str, driver: str, pod_uid: str | None = None,
                                   registry_dir: str | None = None) -> str:
    """Locate `driver`'s registration socket in the registry directory.

    With pod_uid: the exact rolling-update name. Otherwise `<driver>-reg.sock`
    if present, else any socket there (not starting with ".", as the kubelet
    ignores those) whose GetInfo names `driver`; the newest wins, as the
    kubelet prefers the latest instance. Raises KubeletCheckError naming the
    directory when nothing is found
    (docs/failure-modes.md#registration-never-happens-or-is-rejected).
    """
    paths = socket_paths(driver, kubelet_root, pod_uid=pod_uid, registry_dir=registry_dir)
    if pod_uid or _is_socket(paths.registration):
        if not _is_socket(paths.registration):
            raise KubeletCheckError(f"no registration socket {paths.registration}")
        return paths.registration
    try:
        names = sorted(n for n in os.listdir(paths.registry_dir) if not n.startswith("."))
    except FileNotFoundError:
        raise KubeletCheckError(f"registry directory {paths.registry_dir} does not exist") from None
    found: list[tuple[float, str]] = []
    for n in names:
        p = os.path.join(paths.registry_dir, n)
        if not _is_socket(p):
            continue
        try:
            info = await get_info(p)
        except grpc.aio.AioRpcError:
            continue
        if info.name == driver:
            found.append((os.stat(p).st_mtime, p))
    if not found:
        raise KubeletCheckError(f"no registration socket for driver {driver} in {paths.registry_dir}")
    return max(found)[1]


def validate_info(info: reg_pb2.PluginInfo, driver: str, registration_socket: str) -> RegisterCheckResult:
    """Validate PluginInfo as the kubelet does (docs/protocol.md#registration); raises KubeletCheckError.

    type must be "DRAPlugin"; name must equal `driver`; an empty endpoint
    means the registration socket itself; the first service in the
    plugin's order that the kubelet knows is used; none known is an error.
    """
    if info.type != PLUGIN_TYPE:
        raise KubeletCheckError(f"no handler registered for plugin type: {info.type!r}")
    if info.name != driver:
        raise KubeletCheckError(f"plugin name {info.name!r} does not match driver {driver!r}")
    versions = list(info.supported_versions)
    if not versions:
        raise KubeletCheckError("empty list of supported gRPC services")
    dra = next((v for v in versions if v in KUBELET_DRA_SERVICES), None)
    if dra is None:
        raise KubeletCheckError(f"none of services supported by the plugin {versions} are supported "
                                f"by the kubelet {list(KUBELET_DRA_SERVICES)}")
    health = next((v for v in KUBELET_HEALTH_SERVICES if v in versions), None)
    warnings = []
    if versions[0] != DRA_V1:
        warnings.append(f"first advertised service is {versions[0]!r}, not {DRA_V1!r}")
    return RegisterCheckResult(
        registration_socket=registration_socket, type=info.type, name=info.name,
        endpoint=info.endpoint or registration_socket, supported_versions=versions,
        dra_service=dra, dra_version=_SERVICE_VERSION[dra], health_service=health,
        health_version=_SERVICE_VERSION[health] if health else None,
        endpoint_reachable=False, warnings=warnings)


async def register_check(kubelet_root: str, driver: str, pod_uid: str | None = None,
                         *, registry_dir: str | None = None, notify: bool = False,
                         dial_timeout: float = DIAL_TIMEOUT) -> RegisterCheckResult:
    """Run the kubelet's registration handshake against `driver`.

    Finds the socket, GetInfo (1 s), validates, dials the endpoint (waits up
    to `dial_timeout` s for it to become ready), and with notify=True sends
    NotifyRegistrationStatus(true) (or false with the failure reason when
    validation or the dial failed, then re-raises).
    """
    sock = await find_registration_socket(kubelet_root, driver, pod_uid, registry_dir)
    info = await get_info(sock)
    try:
        result = validate_info(info, driver, sock)
        async with _channel(result.endpoint) as ch:
            try:
                await asyncio.wait_for(ch.channel_ready(), dial_timeout)
            except asyncio.TimeoutError:
                raise KubeletCheckError(f"cannot connect to DRA endpoint {result.endpoint}") from None
        result.endpoint_reachable = True
    except KubeletCheckError as exc:
        if notify:
            await notify_status(sock, False, f"RegisterPlugin error -- plugin validation failed with err: {exc}")
        raise
    if notify:
        await notify_status(sock, True, "")
        result.notified = True
    return result


async def notify_status(registration_socket: str, registered: bool, error: str = "") -> None:
    """Send NotifyRegistrationStatus with the kubelet's 5 s limit."""
    async with _channel(registration_socket) as ch:
        await reg_grpc.RegistrationStub(ch).NotifyRegistrationStatus(
            reg_pb2.RegistrationStatus(plugin_registered=registered, error=error), timeout=NOTIFY_TIMEOUT)


def _dra_stub(ch: grpc.aio.Channel, version: str):
    if version == "v1":
        return dra_v1_pb2_grpc.DRAPluginStub(ch)
    if version == "v1beta1":
        return dra_v1beta1_pb2_grpc.DRAPluginStub(ch)
    raise ValueError(f"unknown DRA API version {version!r} (v1, v1beta1)")


def _pb_claims(pb, claims: Sequence[ClaimRef]):
    return [pb.Claim(uid=c.uid, namespace=c.namespace, name=c.name) for c in claims]


async def prepare(endpoint: str, claims: Sequence[ClaimRef], version: str = "v1",
                  timeout: float = CALL_TIMEOUT) -> dict[str, PrepareOutcome]:
    """NodePrepareResources on `endpoint` (DRA socket path); keyed by claim UID.

    share_id is None on v1beta1 and when the driver did not set it.
    """
    async with _channel(endpoint) as ch:
        stub = _dra_stub(ch, version)
        pb = DRA_PB[version]
        resp = await stub.NodePrepareResources(pb.NodePrepareResourcesRequest(claims=_pb_claims(pb, claims)),
                                               timeout=timeout)
    out = {}
    for uid, r in resp.claims.items():
        devices = [PreparedDevice(
            requests=list(d.request_names), pool=d.pool_name, device=d.device_name,
            cdi_device_ids=list(d.cdi_device_ids),
            share_id=d.share_id if version == "v1" and d.HasField("share_id") else None,
        ) for d in r.devices]
        out[uid] = PrepareOutcome(devices=devices, error=r.error)
    return out


async def unprepare(endpoint: str, claims: Sequence[ClaimRef], version: str = "v1",
                    timeout: float = CALL_TIMEOUT) -> dict[str, str]:
    """NodeUnprepareResources on `endpoint`; claim UID -> error ("" = ok)."""
    async with _channel(endpoint) as ch:
        stub = _dra_stub(ch, version)
        pb = DRA_PB[version]
        resp = await stub.NodeUnprepareResources(pb.NodeUnprepareResourcesRequest(claims=_pb_claims(pb, claims)),
                                                 timeout=timeout)
    return {uid: r.error for uid, r in resp.claims.items()}


def _health_stub(ch: grpc.aio.Channel, version: str):
    if version == "v1":
        return dra_health_v1_pb2_grpc.DRAResourceHealthStub(ch)
    if version == "v1alpha1":
        return dra_health_v1alpha1_pb2_grpc.DRAResourceHealthStub(ch)
    raise ValueError(f"unknown health API version {version!r} (v1, v1alpha1)")


async def watch_health(endpoint: str, version: str = "v1") -> AsyncIterator[list[DeviceHealth]]:
    """Stream NodeWatchResources; yields each full device list as received.

    Raises grpc.aio.AioRpcError (code UNIMPLEMENTED when the driver has no
    health source). Stop by breaking out of the loop / closing the iterator.
    """
    from .health import DeviceHealth, Health

    to_health = {0: Health.UNKNOWN, 1: Health.HEALTHY, 2: Health.UNHEALTHY}
    async with _channel(endpoint) as ch:
        stub = _health_stub(ch, version)
        call = stub.NodeWatchResources(HEALTH_PB[version].NodeWatchResourcesRequest())
        try:
            async for resp in call:
                yield [DeviceHealth(pool=d.device.pool_name, device=d.device.device_name,
                                    health=to_health.get(d.health, Health.UNKNOWN), message=d.message,
                                    last_updated=float(d.last_updated_time),
                                    timeout_seconds=d.health_check_timeout_seconds)
                       for d in resp.devices]
        finally:
            call.cancel()

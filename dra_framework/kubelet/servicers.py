"""gRPC servicers: registration, DRA node service (v1, v1beta1), health.

Wire rules: docs/protocol.md (#registration, #prepare-and-unprepare,
#health-stream).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

from ._proto import (
    dra_health_v1_pb2,
    dra_health_v1alpha1_pb2,
    dra_v1_pb2,
    dra_v1beta1_pb2,
    pluginregistration_v1_pb2 as reg_pb2,
)
from .transport import Status
from .types import CALL_DEADLINE, ClaimRef, DRAEngine, PreparedDevice

if TYPE_CHECKING:  # .health imports the backend model: not needed to answer GetInfo at start-up
    from .health import HealthState

log = logging.getLogger(__name__)

# supported_versions strings: "<last proto package component>.<Service>" (docs/protocol.md#registration).
DRA_V1 = "v1.DRAPlugin"
DRA_V1BETA1 = "v1beta1.DRAPlugin"
HEALTH_V1 = "v1.DRAResourceHealth"
HEALTH_V1ALPHA1 = "v1alpha1.DRAResourceHealth"
PLUGIN_TYPE = "DRAPlugin"

# Python modules per API version; module names differ, proto packages are exact.
DRA_PB: dict[str, ModuleType] = {"v1": dra_v1_pb2, "v1beta1": dra_v1beta1_pb2}
HEALTH_PB: dict[str, ModuleType] = {"v1": dra_health_v1_pb2, "v1alpha1": dra_health_v1alpha1_pb2}


@cache
def _health_to_pb() -> dict:
    from .health import Health

    return {Health.HEALTHY: 1, Health.UNHEALTHY: 2, Health.UNKNOWN: 0}


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _deadline(context) -> float | None:
    """The call's deadline as a ``time.monotonic()`` value, None without one."""
    try:
        remaining = context.time_remaining()
    except Exception:  # noqa: BLE001 - a context without deadline support
        return None
    if not isinstance(remaining, (int, float)) or remaining != remaining or remaining > 10 * 365 * 86400:
        return None
    return time.monotonic() + max(0.0, float(remaining))


# --- registration (docs/protocol.md#registration) ----------------------------

@dataclass(frozen=True)
class RegistrationStatus:
    """Last NotifyRegistrationStatus from the kubelet; at = Unix seconds."""

    registered: bool
    error: str
    at: float


class RegistrationServicer:
    """pluginregistration.Registration.

    GetInfo answers from static data at once (the kubelet allows 1 s;
    docs/failure-modes.md#slow-or-failing-getinfo). NotifyRegistrationStatus is
    recorded for readiness; a `false`
    is not final because the kubelet retries registration from scratch.
    """

    def __init__(self, info: reg_pb2.PluginInfo) -> None:
        self._info = info
        self.get_info_calls = 0
        self.last_get_info_at: float | None = None
        self.status: RegistrationStatus | None = None
        self.changed = asyncio.Event()

    async def GetInfo(self, request, context):
        self.get_info_calls += 1
        self.last_get_info_at = time.time()
        self.changed.set()
        return self._info

    async def NotifyRegistrationStatus(self, request, context):
        self.status = RegistrationStatus(request.plugin_registered, request.error, time.time())
        if request.plugin_registered:
            log.info("kubelet registered DRA driver %s", self._info.name)
        else:
            log.warning("kubelet rejected DRA driver %s: %s", self._info.name,
                        request.error or "(no reason given)")
        self.changed.set()
        # Answer OK either way: an error here only makes older kubelets log
        # "failed to send registration status" (docs/protocol.md#registration).
        return reg_pb2.RegistrationStatusResponse()


# --- DRA node service (docs/protocol.md#prepare-and-unprepare) ---------------

def _base_request(name: str) -> str:
    # The Go helper strips "<request>/<subrequest>" to "<request>" (docs/protocol.md#prepare-and-unprepare).
    return name.split("/", 1)[0]


class DRAServicer:
    """k8s.io.kubelet.pkg.apis.dra.{v1,v1beta1}.DRAPlugin over a DRAEngine.

    Every requested claim UID gets an entry; UIDs the engine invents are
    dropped (the kubelet rejects unknown UIDs). share_id is sent on v1 only.
    """

    def __init__(self, engine: DRAEngine, version: str) -> None:
        self.engine = engine
        self._version = version
        self._pb = DRA_PB[version]
        self._share_id = version == "v1"

    def _claims(self, request) -> list[ClaimRef]:
        return [ClaimRef(uid=c.uid, namespace=c.namespace, name=c.name) for c in request.claims]

    def _device(self, d: PreparedDevice):
        names = list(dict.fromkeys(_base_request(r) for r in d.requests))
        dev = self._pb.Device(request_names=names, pool_name=d.pool, device_name=d.device,
                              cdi_device_ids=list(d.cdi_device_ids))
        if self._share_id and d.share_id is not None:
            dev.share_id = d.share_id
        return dev

    @staticmethod
    def _split(claims: list[ClaimRef]) -> tuple[list[ClaimRef], dict[str, str]]:
        """Claims with valid namespace/name/UID, and an error per claim UID of the others: they
        never reach the engine (names go into API URLs, UIDs into file names)."""
        from ..kubenames import claim_ref_problem

        ok, bad = [], {}
        for c in claims:
            why = claim_ref_problem(c.namespace, c.name, c.uid)
            if why:
                log.warning("refusing claim %r/%r (%r): %s", c.namespace, c.name, c.uid, why)
                bad[c.uid] = why
            else:
                ok.append(c)
        return ok, bad

    async def NodePrepareResources(self, request, context):
        claims = self._claims(request)
        valid, refused = self._split(claims)
        token = CALL_DEADLINE.set(_deadline(context))
        try:
            result = await self.engine.prepare(valid) if valid else {}
            failure = "" if isinstance(result, dict) else f"internal error: engine prepare returned {type(result).__name__}"
        except Exception as exc:  # per-claim error, not a gRPC error
            log.exception("%s NodePrepareResources: engine failed", self._version)
            result, failure = {}, _error_text(exc)
        finally:
            CALL_DEADLINE.reset(token)
        if failure:
            result = {}
        resp = self._pb.NodePrepareResourcesResponse()
        for c in claims:
            out = result.get(c.uid) if not failure else None
            entry = resp.claims[c.uid]
            if c.uid in refused:
                entry.error = refused[c.uid]
            elif failure:
                entry.error = failure
            elif out is None:
                entry.error = f"internal error: driver returned no result for claim {c.namespace}/{c.name} ({c.uid})"
            elif out.error:
                entry.error = out.error
            else:
                entry.devices.extend(self._device(d) for d in out.devices)
        _warn_extra(result, valid, "prepare")
        return resp

    async def NodeUnprepareResources(self, request, context):
        claims = self._claims(request)
        valid, refused = self._split(claims)
        token = CALL_DEADLINE.set(_deadline(context))
        try:
            result = await self.engine.unprepare(valid) if valid else {}
            failure = "" if isinstance(result, dict) else f"internal error: engine unprepare returned {type(result).__name__}"
        except Exception as exc:
            log.exception("%s NodeUnprepareResources: engine failed", self._version)
            result, failure = {}, _error_text(exc)
        finally:
            CALL_DEADLINE.reset(token)
        if failure:
            result = {}
        resp = self._pb.NodeUnprepareResourcesResponse()
        for c in claims:
            entry = resp.claims[c.uid]
            if c.uid in refused:
                entry.error = refused[c.uid]
            elif failure:
                entry.error = failure
            elif c.uid not in result:
                entry.error = f"internal error: driver returned no result for claim {c.namespace}/{c.name} ({c.uid})"
            else:
                entry.error = result[c.uid] or ""
        _warn_extra(result, valid, "unprepare")
        return resp


def _warn_extra(result: dict, claims: list[ClaimRef], op: str) -> None:
    extra = set(result) - {c.uid for c in claims}
    if extra:
        log.warning("engine %s returned results for unrequested claims %s; dropped", op, sorted(extra))


# --- health (docs/protocol.md#health-stream) -----------------------------------

class HealthServicer:
    """{v1alpha1,v1}.DRAResourceHealth/NodeWatchResources.

    Streams the full device list on connect, after every change and at
    least every `resend_interval` seconds (the kubelet marks devices Unknown
    after 30 s without a report). Without a HealthState it answers
    UNIMPLEMENTED, which makes 1.37 kubelets stop watching
    (docs/failure-modes.md#health-service-advertised-but-not-implemented).
    """

    def __init__(self, state: HealthState | None, version: str, resend_interval: float,
                 closing: asyncio.Event, attached: asyncio.Event | None = None) -> None:
        self.state = state
        self._attached = attached  # unset while the driver starts: streams wait (PluginServer.attach)
        self._pb = HEALTH_PB[version]
        self._version = version
        self._interval = resend_interval
        self._closing = closing
        self._subs: set = set()
        self._idle = asyncio.Event()  # set while no stream is open
        self._idle.set()
        self._logged_unimplemented = False

    async def wait_closed(self) -> None:
        """Return once no stream is open."""
        await self._idle.wait()

    def wake_all(self) -> None:
        """Make open streams notice `closing` now (used by stop())."""
        for s in list(self._subs):
            s.wake()

    def _response(self, state: HealthState):
        pb, to_pb = self._pb, _health_to_pb()
        return pb.NodeWatchResourcesResponse(devices=[
            pb.DeviceHealth(
                device=pb.DeviceIdentifier(pool_name=d.pool, device_name=d.device),
                health=to_pb[d.health],
                last_updated_time=int(d.last_updated),
                health_check_timeout_seconds=max(0, int(d.timeout_seconds)),
                message=d.message,
            )
            for d in state.snapshot()
        ])

    async def NodeWatchResources(self, request, context):
        if self._attached is not None and not self._attached.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self._attached, self._closing)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self._closing.is_set():
                return
        state = self.state
        if state is None:
            if not self._logged_unimplemented:  # once, not every 5 s (docs/failure-modes.md)
                self._logged_unimplemented = True
                log.info("%s health watch refused: driver has no health source", self._version)
            await context.abort(Status.UNIMPLEMENTED,
                                "this DRA driver has no device health source")
            return  # abort raises; a test double may not
        sub = state.subscribe()
        self._subs.add(sub)
        self._idle.clear()
        try:
            while not self._closing.is_set():
                yield self._response(state)
                await sub.wait(self._interval)
        finally:
            self._subs.discard(sub)
            if not self._subs:
                self._idle.set()
            sub.close()

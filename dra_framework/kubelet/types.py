"""Engine boundary of the kubelet gRPC layer.

The DRA servicers (v1 and v1beta1) translate the kubelet's protobuf calls
into these plain dataclasses and call an object implementing `DRAEngine`.
Wire semantics they rely on: docs/protocol.md#prepare-and-unprepare.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


#: The kubelet's limit for NodePrepareResources / NodeUnprepareResources, seconds
#: (docs/protocol.md#prepare-and-unprepare).
CALL_TIMEOUT = 45.0

#: The deadline of the kubelet call being served, as a ``time.monotonic()`` value, or None
#: when the call has none. The DRA servicers set it around each engine call; engines drop work
#: for a claim whose caller stopped waiting before they changed anything (the kubelet allows
#: 45 s per call and retries).
CALL_DEADLINE: ContextVar[float | None] = ContextVar("dra_call_deadline", default=None)


@dataclass(frozen=True)
class ClaimRef:
    """One ResourceClaim as the kubelet names it (proto `Claim`).

    `uid` is the ResourceClaim UID; all state must be keyed by it, never by
    namespace/name (a re-created claim keeps its name;
    docs/failure-modes.md#claim-re-created-under-the-same-name).
    """

    uid: str
    namespace: str
    name: str


@dataclass
class PreparedDevice:
    """One prepared device (proto `Device`).

    requests: request names the device serves; empty = all requests. A
        `<request>/<subrequest>` entry is cut to `<request>` on the wire,
        as the Go helper does (docs/protocol.md#prepare-and-unprepare).
    pool, device: ResourceSlice pool and device name, both required.
    cdi_device_ids: fully qualified CDI IDs `<vendor>/<class>=<name>`.
    share_id: consumable-capacity share UID; sent on v1 only, dropped on
        v1beta1 (which has no such field).
    """

    requests: list[str]
    pool: str
    device: str
    cdi_device_ids: list[str]
    share_id: str | None = None


@dataclass
class PrepareOutcome:
    """Result for one claim: devices on success, or a non-empty `error`.

    A non-empty error fails the pod's preparation and the kubelet retries
    later; devices are then ignored (docs/protocol.md#prepare-and-unprepare).
    """

    devices: list[PreparedDevice] = field(default_factory=list)
    error: str = ""


@runtime_checkable
class DRAEngine(Protocol):
    """What the DRA servicers delegate to.

    Both calls must be idempotent: the kubelet repeats them after restarts
    and may unprepare claims that were never prepared (docs/protocol.md#prepare-and-unprepare).
    The servicer fills in an error entry for any requested UID the engine
    leaves out, drops UIDs that were not requested, and turns an exception
    into that error text for every claim of the call.
    """

    async def prepare(self, claims: list[ClaimRef]) -> dict[str, PrepareOutcome]:
        """Prepare `claims`; result keyed by claim UID."""
        ...

    async def unprepare(self, claims: list[ClaimRef]) -> dict[str, str]:
        """Unprepare `claims`; claim UID -> error text ("" on success)."""
        ...

"""What the prepare/unprepare engine needs from outside: the claim getter, the status writer,
the metrics sink and the CDI spec writer, and the per-claim error it reports."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence

from ..cdi.edits import ContainerEdits
from ..cdi.writer import ClaimDevice
from ..model import ClaimInfo

#: ``async get_claim(namespace, name)`` → the ResourceClaim as a resource.k8s.io/v1 dict, or
#: None when it does not exist (404). Raise for any other failure.
ClaimGetter = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
#: ``async write_status(claim, devices)``: server-side apply ``status.devices`` (entries
#: ``{driver, pool, device, shareID?, conditions, data, networkData}``) of the claim with the
#: driver as field manager; an empty list removes the driver's entries.
StatusWriter = Callable[[ClaimInfo, list[dict[str, Any]]], Awaitable[None]]


class ClaimError(Exception):
    """A per-claim failure: ``reason`` is a short metric label (fetch, not_found, uid_mismatch,
    not_allocated, unknown_device, config, device_in_use, backend, cdi, status, checkpoint,
    rollback, unprepare, deadline, shutdown); the message names the claim."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EngineMetrics(Protocol):
    """The metrics sink the engine reports to (``dra_framework.metrics.DriverMetrics`` fits)."""

    def observe_prepare(self, seconds: float, error_reason: str | None = None) -> None: ...
    def observe_unprepare(self, seconds: float, error_reason: str | None = None) -> None: ...
    def inflight(self, delta: int, operation: str = "prepare") -> None: ...
    def set_prepared_claims(self, n: int) -> None: ...


class NullMetrics:
    """An :class:`EngineMetrics` that records nothing."""

    def observe_prepare(self, seconds: float, error_reason: str | None = None) -> None:
        pass

    def observe_unprepare(self, seconds: float, error_reason: str | None = None) -> None:
        pass

    def inflight(self, delta: int, operation: str = "prepare") -> None:
        pass

    def set_prepared_claims(self, n: int) -> None:
        pass


class ClaimSpecWriter(Protocol):
    """The part of :class:`dra_framework.cdi.CdiWriter` the engine uses (one vendor/class)."""

    def qualified(self, device_name: str) -> str: ...
    def claim_spec_path(self, claim_uid: str) -> str: ...
    def write_claim_spec(self, claim_uid: str, devices: Sequence[ClaimDevice],
                         claim_edits: ContainerEdits | None = None) -> list[str]: ...
    def ensure_claim_spec(self, claim_uid: str, devices: Sequence[ClaimDevice],
                          claim_edits: ContainerEdits | None = None) -> list[str]: ...
    def read_claim_spec_ids(self, claim_uid: str) -> list[str] | None: ...
    def remove_claim_spec(self, claim_uid: str) -> bool: ...
    def list_claim_spec_uids(self) -> list[str]: ...
    def remove_stale_temp_files(self) -> list[str]: ...


__all__ = ["ClaimDevice", "ClaimError", "ClaimGetter", "ClaimSpecWriter", "EngineMetrics", "NullMetrics",
           "StatusWriter"]

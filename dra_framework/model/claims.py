"""What the framework hands a backend at prepare time, and what the backend returns.

Sources: ResourceClaim.status.allocation.devices.results[] (resource.k8s.io/v1),
ResourceClaim.status.devices[] (driver-owned device status, KEP-4817) and the CDI spec's
containerEdits.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Mapping, Sequence

from ..cdi.edits import ContainerEdits
from .devices import Device


@dataclass(frozen=True, slots=True)
class ClaimInfo:
    """The claim being prepared: ``uid``, ``namespace``, ``name`` from the ResourceClaim."""

    uid: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.uid}"


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    """One allocation result for this driver, joined with the device the backend published.

    - ``request``: the request name with any subrequest reduced to the base request
      (``gpu/large`` → ``gpu``); ``subrequest`` keeps the full ``<request>/<subrequest>``.
    - ``configs``: decoded opaque configs that apply to this device's request, in precedence
      order (class configs, then claim configs; later entries win).
    - ``share_id``: set for consumable capacity (DRAConsumableCapacity), with
      ``consumed_capacity`` (capacity name → quantity string).
    - ``admin_access``: the result has ``adminAccess: true`` (a monitoring or maintenance
      claim in a namespace labelled ``resource.kubernetes.io/admin-access: "true"``; the
      allocator gives it devices other claims already use). The framework never calls
      ``dra_create_partition`` or ``dra_destroy_partition`` for it and does not count it as
      holding the device; ``dra_prepare`` must only return edits that give access to the
      device as it is, never create, reset or reconfigure it (no partitions, mode or sharing
      changes), and fail clearly when the device does not exist yet (an unprepared partition).
      See docs/backends.md.
    """

    request: str
    pool: str
    device: Device
    subrequest: str | None = None
    admin_access: bool = False
    share_id: str | None = None
    consumed_capacity: Mapping[str, str] = field(default_factory=dict)
    configs: Sequence[Any] = ()

    @property
    def name(self) -> str:
        return self.device.name


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkData:
    """ResourceClaim.status.devices[].networkData (KEP-4817), keyword-only::

        NetworkData(interface_name="net1", ips=["10.1.0.5/24"], hardware_address="52:54:00:12:34:56")

    - ``interface_name``: the interface inside the pod (≤256 characters).
    - ``ips``: CIDR strings, IPv4 or IPv6 (≤16 entries).
    - ``hardware_address``: MAC address (≤128 characters).
    """

    interface_name: str = ""
    ips: Sequence[str] = ()
    hardware_address: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """Driver-owned status for one allocated device (ResourceClaim.status.devices[], KEP-4817),
    keyword-only. The framework writes it to the claim after prepare and clears it at unprepare.

    - ``data``: arbitrary JSON object (≤10 KiB serialised), e.g. ``{"uuid": "GPU-1234"}``.
    - ``network_data``: a :class:`NetworkData` for network devices.
    - ``conditions``: metav1.Condition dicts (≤8), each with ``type``, ``status``
      (``"True"``/``"False"``/``"Unknown"``), ``reason`` and ``message``.
    """

    data: Mapping[str, Any] | None = None
    network_data: NetworkData | None = None
    conditions: Sequence[Mapping[str, Any]] = ()


@dataclass(slots=True)
class PreparedDeviceEdits:
    """The container edits for one allocated device, plus its optional driver-owned status:
    ``PreparedDeviceEdits(ContainerEdits(env={"X": "1"}), status=DeviceStatus(data={...}))``.
    ``status`` is keyword-only."""

    edits: ContainerEdits = field(default_factory=ContainerEdits)
    _: KW_ONLY
    status: DeviceStatus | None = None


@dataclass(slots=True, kw_only=True)
class PrepareResult:
    """What ``dra_prepare`` returns for one claim (keyword-only; ``PrepareResult()`` means
    "nothing to inject": every device gets only the claim-level edits).

    - ``devices``: device name → edits; a device missing here gets empty edits (its CDI device
      still exists, so the container sees the claim-level edits).
    - ``claim_edits``: edits for the whole claim (for example TPU topology env spanning chips);
      added to every device's CDI entry of this claim.
    - ``teardown``: JSON-serialisable data stored in the checkpoint and handed back to
      ``dra_unprepare``; it is the only input unprepare gets besides the claim.
    """

    devices: dict[str, PreparedDeviceEdits] = field(default_factory=dict)
    claim_edits: ContainerEdits | None = None
    teardown: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredClaim:
    """What the checkpoint holds for a claim, as handed to ``dra_unprepare``.

    - ``completed``: False when the driver died (or failed) between PrepareStarted and
      PrepareCompleted; the backend must then roll back from ``journal`` alone.
    - ``journal``: key → JSON value recorded through ``PrepareContext.record`` before each side
      effect.
    - ``teardown``: what ``PrepareResult.teardown`` held (empty when not completed).
    - ``devices``: names of the allocated devices of this backend.
    - ``physically_prepared``: False when the node rebooted since (boot id differs): hardware
      state is gone, only files need cleaning.
    """

    claim: ClaimInfo
    completed: bool
    devices: Sequence[str] = ()
    journal: Mapping[str, Any] = field(default_factory=dict)
    teardown: Mapping[str, Any] = field(default_factory=dict)
    physically_prepared: bool = True

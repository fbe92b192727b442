"""The whole backend contract, in one file.

There are two levels of hooks, both under the pluggy project name ``dra_framework``:

1. **Registry hooks** (:class:`RegistrySpec`), implemented at module level by the object an entry
   point of the group ``dra_framework.backends`` names. They run once at start-up and register
   backend *types* by name.
2. **Backend hooks** (:class:`BackendSpec`), implemented as methods of a backend *instance*. The
   framework creates one instance per use in the composed-driver config (``drivers[].backends[]``),
   with that entry's validated options, and registers it in a plugin manager of its own. So one
   backend type can serve two drivers with different options in one process.

Every hook may be ``async def``; the framework awaits coroutines (pluggy itself does not).
Implementations may take fewer arguments than the spec lists. The ``dra_`` prefix is reserved for
hooks: at start-up a ``dra_*`` name that is not a hook (with the closest valid name), a hook not
marked ``@hookimpl``, a missing required hook or half of a pair disables that plugin with one
line naming package and hook (:mod:`dra_framework.hookcheck`, docs/backends.md section 7). Results
are type-checked by :class:`dra_framework.backend_hooks.BackendHooks`.

Lifecycle of a backend instance::

    factory(options, context)           # from dra_register_backends
    dra_reconcile_partitions(owned)     # once, before serving; optional
    dra_discover(inventory)             # at start-up and on context.request_rediscovery()
    dra_watch_health(report)            # runs for the life of the driver; optional
    per claim: dra_create_partition → dra_prepare → ... → dra_unprepare → dra_destroy_partition
    dra_shutdown()
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import pluggy

if TYPE_CHECKING:
    from .backend import BackendContext, PrepareContext
    from .model import (
        AllocatedDevice,
        HealthReport,
        Inventory,
        OpaqueConfig,
        PrepareResult,
        StoredClaim,
    )

PROJECT = "dra_framework"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class RegisterBackend(Protocol):
    """The ``register`` callback given to :func:`RegistrySpec.dra_register_backends`."""

    def __call__(self, name: str, factory: Callable[[Any, "BackendContext"], object],
                 options: type | None = None, description: str = "") -> None:
        """Register a backend type.

        - ``name``: what ``drivers[].backends[].name`` refers to in the config.
        - ``factory(options, context)``: returns the backend instance (an object whose methods are
          :class:`BackendSpec` hook implementations). Usually the backend class itself.
        - ``options``: a pydantic model class for ``drivers[].backends[].options``; validated
          strictly, errors name the config field. None means the backend takes no options
          besides ``hostRoot``.
        """


class RegistrySpec:
    """Module-level hooks of an entry-point plugin."""

    @hookspec
    def dra_register_backends(self, register: RegisterBackend) -> None:
        """Called once at start-up on every loaded plugin. Call ``register(...)`` for each backend
        type the plugin provides. Returns nothing (all results are ignored)."""


class BackendSpec:
    """Hooks of a backend instance. :meth:`dra_discover`, :meth:`dra_prepare` and
    :meth:`dra_unprepare` are required; :meth:`dra_create_partition` and
    :meth:`dra_destroy_partition` come as a pair; the rest are optional."""

    @hookspec
    def dra_discover(self, inventory: "Inventory") -> None:
        """Discover devices. Called at start-up and each time the backend calls
        ``context.request_rediscovery()``; each call starts from an empty inventory, so report
        everything that exists now.

        Fill ``inventory`` with ``add_device(Device, pool=None)`` and
        ``add_counter_set(CounterSet, pool=None)``; ``pool=None`` is the driver's node pool,
        other pools are declared with ``inventory.pool(name, selection)``. Device names must be
        DNS labels that stay the same across restarts and reboots. Returns nothing.

        Raising fails start-up of this driver with the error (other drivers keep running).
        """

    @hookspec
    def dra_config_types(self) -> "Sequence[type[OpaqueConfig]]":
        """Return the opaque config types this backend accepts, each an ``OpaqueConfig`` subclass
        with ``api_version`` and ``kind`` class variables. Results of all implementations are
        concatenated. A config for this driver whose apiVersion/kind no backend accepts fails
        the claim's prepare with an error naming them."""

    @hookspec(firstresult=True)
    def dra_validate_config(self, config: "OpaqueConfig", device: "AllocatedDevice") -> "bool | None":
        """Check that a decoded config may be applied to one allocated device. Called before any
        side effect of the claim's prepare.

        - Raise ValueError with a message naming the field when the config is invalid for the
          device; the claim's prepare fails with it and nothing is changed on the node.
        - Return False when the config is of a type that does not apply to this kind of device
          (a GPU config and a MIG device): a claim- or class-wide config is then skipped for this
          device, while one scoped to the device's request fails the claim.
        - Return None or True to apply it. firstresult."""

    @hookspec(firstresult=True)
    def dra_create_partition(self, ctx: "PrepareContext", device: "AllocatedDevice") -> "Mapping[str, Any] | None":
        """Create the partition (for example a dynamic MIG instance) that ``device`` stands for.

        Called for every allocated device of this backend before :meth:`dra_prepare`, except
        admin-access results (``device.admin_access``): they use a partition as it is and never
        create or destroy one (docs/backends.md, "Admin access"). Return None when the device is
        not a partition. Otherwise return the partition record (JSON-serialisable): it is stored
        in the checkpoint and passed to
        :meth:`dra_destroy_partition` and :meth:`dra_reconcile_partitions`, and available to
        :meth:`dra_prepare` as ``ctx.partitions[device.name]``. firstresult.

        Before this hook runs, the framework checkpoints a *pending* partition entry for the
        device. If the hook raises, or the driver dies before the returned record is stored,
        that entry is what :meth:`dra_destroy_partition` gets on rollback (see there), so no
        backend needs a journal of its own for half-created partitions. What a multi-step
        creation needs to undo its steps goes into ``await ctx.record(key, value)`` *before*
        each side effect; entries recorded while this hook runs are kept in the pending entry.
        Write state files with :func:`dra_framework.api.write_state_file` (atomic, refuses
        symbolic links). See docs/backends.md "Crash safety of partitions".
        """

    @hookspec(firstresult=True)
    def dra_prepare(self, ctx: "PrepareContext", devices: "Sequence[AllocatedDevice]") -> "PrepareResult":
        """Prepare the devices allocated to one claim (``ctx.claim``) that this backend owns.

        Called with all of the claim's devices of this backend at once, after partitions were
        created. ``devices[i].configs`` hold the decoded opaque configs for that device's request
        in precedence order. An admin-access device (``admin_access``) must only be made
        reachable, never reconfigured. Before each side effect on the node (driver rebinding, compute-mode
        change, programming a bitstream) call ``await ctx.record(key, value)`` so that a crash
        leaves enough in the checkpoint to undo it. Use ``async with ctx.lock(device_name)`` to
        serialise work on one physical device across claims.

        Return a ``PrepareResult`` with container edits per device, optional claim-level edits,
        optional driver-owned device status, and the teardown data for unprepare. Raise to fail
        this claim only; the framework then rolls back via :meth:`dra_unprepare` with
        ``completed=False``. firstresult.
        """

    @hookspec(firstresult=True)
    def dra_unprepare(self, stored: "StoredClaim") -> None:
        """Undo a prepare, given only what the checkpoint holds (``stored``): the journal entries,
        the teardown data (when completed) and device names. Called at unprepare, and to roll
        back a failed or interrupted prepare (``stored.completed`` False). Must be idempotent: it
        can be called again after a crash half-way. When ``stored.physically_prepared`` is False
        the node rebooted since and hardware state is already gone. Raise to make the kubelet
        retry. firstresult (return None)."""

    @hookspec(firstresult=True)
    def dra_destroy_partition(self, record: "Mapping[str, Any]") -> None:
        """Destroy a partition of a claim, from ``record`` alone (no discovery state needed).
        Called after :meth:`dra_unprepare`, at unprepare and on rollback (also by the next driver
        process after a crash); not called when the node rebooted since. ``record`` is either

        - the record :meth:`dra_create_partition` returned, or
        - a pending record ``{"device": <device name>, "pending": True, "journal": {key:
          value, ...}}`` when that hook had not returned (it raised, or the driver died in it or
          before its record was stored): ``journal`` holds the entries the backend recorded
          through ``ctx.record`` while it ran for this device (empty when it recorded nothing or
          never started), and ``"recovered": True`` is added when the checkpoint was lost and
          the claim kept from its CDI spec. The partition may be absent, half-created or
          complete: destroy whatever of it exists. A pending record can also name a device that
          is not a partition: do nothing then.

        Must be idempotent and tolerate a partition that is already gone. Raise (for example
        "in use") to make the kubelet retry the unprepare."""

    @hookspec(firstresult=True)
    def dra_reconcile_partitions(self, owned: "Sequence[Mapping[str, Any]]") -> None:
        """Called once at start-up, before serving; ``owned`` holds the partition records that
        checkpointed claims of this boot own, pending records included (same shapes as for
        :meth:`dra_destroy_partition`): a half-created partition of an interrupted prepare is
        owned, its claim's rollback destroys it. Apply the backend's policy to partitions found
        on the node that no claim owns (adopt, destroy or refuse). Must never raise for a policy
        outcome: raising is logged and the driver keeps serving, so it cannot crash-loop on
        hardware state."""

    @hookspec
    def dra_watch_health(self, report: "Callable[[HealthReport], None]") -> None:
        """A health source: run for the life of the driver (normally ``async def`` with a loop),
        calling ``report(HealthReport)`` whenever a device's health changes and at least once per
        device at start. Health feeds the kubelet's health stream (KEP-4680) and the device
        taints in the published ResourceSlices (KEP-5055). If it raises, the framework marks this
        backend's devices Unknown, logs once, and restarts it with back-off; prepare and
        unprepare keep working. A backend without this hook has no health source."""

    @hookspec
    def dra_shutdown(self) -> None:
        """Called once when the driver stops (SIGTERM). Release NVML handles, event sets, etc."""

"""The register-callback object a backend's discovery fills (``dra_discover`` hook)."""
from __future__ import annotations

from .devices import CounterSet, Device, NodeSelection, Pool


class Inventory:
    """Collects the pools, devices and counter sets one backend discovers.

    ``pool=None`` means the driver's default node pool (named after the node). Adding a device
    twice under the same name in one pool raises ValueError naming it, so that a discovery bug
    does not silently drop a device.
    """

    def __init__(self) -> None:
        self._pools: dict[str | None, Pool] = {}

    def pool(self, name: str | None = None, selection: NodeSelection | None = None) -> Pool:
        """Declare (or fetch) a pool; ``selection`` only applies when the pool is first declared."""
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = Pool(name=name, selection=selection or NodeSelection())
        return pool

    def add_device(self, device: Device, pool: str | None = None) -> None:
        """Add ``device`` to ``pool`` (None: the node pool). Raises ValueError naming the device
        when a device of that name is already in the pool."""
        target = self.pool(pool)
        if any(d.name == device.name for d in target.devices):
            raise ValueError(f"device {device.name!r} added twice to {_pool_label(pool)}")
        target.devices.append(device)

    def add_counter_set(self, counter_set: CounterSet, pool: str | None = None) -> None:
        """Add ``counter_set`` to ``pool`` (None: the node pool); devices of the same pool consume
        it through ``Device(consumes_counters=...)``. Raises ValueError naming a duplicate."""
        target = self.pool(pool)
        if any(c.name == counter_set.name for c in target.counter_sets):
            raise ValueError(f"counter set {counter_set.name!r} added twice to {_pool_label(pool)}")
        target.counter_sets.append(counter_set)

    @property
    def pools(self) -> list[Pool]:
        """The pools declared so far, in declaration order."""
        return list(self._pools.values())


def _pool_label(pool: str | None) -> str:
    return f"pool {pool!r}" if pool else "the node pool"

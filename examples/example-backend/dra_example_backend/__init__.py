"""A complete third-party backend: simulated accelerators, each splittable into two halves that
share its counters (KEP-4815 partitionable devices). Found through its entry point."""
from pydantic import Field
from dra_framework.api import (BaseOptions, Capacity, ContainerEdits, CounterConsumption, CounterSet, Device,
                               OpaqueConfig, PreparedDeviceEdits, PrepareResult, RequestPolicy, ValidRange, Version,
                               hookimpl, write_state_file)

class Options(BaseOptions):
    count: int = Field(4, ge=0, le=64, description="Number of simulated accelerators.")
    memory_gib: int = Field(16, alias="memoryGiB", gt=0)
    model: str = "sim-x1"
    shared: bool = Field(False, description="Whole cards only, shared by memory (consumable capacity).")


class ExampleConfig(OpaqueConfig):
    """Opaque config: ``{apiVersion: example.dra.dev/v1, kind: ExampleConfig, mode: fast}``."""
    api_version = "example.dra.dev/v1"
    kind = "ExampleConfig"
    mode: str = Field("normal", pattern="^(normal|fast)$")


class ExampleBackend:
    """Simulated accelerators with two half partitions each."""

    def __init__(self, options: Options, context):
        self.o, self.ctx = options, context

    @hookimpl
    def dra_discover(self, inventory):
        mem, gib, shared = self.o.memory_gib << 30, 1 << 30, self.o.shared  # shared: claims take 1Gi steps
        pol = RequestPolicy(default=gib, valid_range=ValidRange(min=gib, step=gib)) if shared else None
        for i in range(self.o.count):
            attrs = {"model": self.o.model, "index": i, "firmware": Version("1.2.0")}
            if not shared:
                inventory.add_counter_set(CounterSet(f"acc-{i}-counters", {"memory": mem, "halves": 2}))
            inventory.add_device(Device(
                f"acc-{i}", attributes={**attrs, "partition": False}, capacity={"memory": Capacity(mem, pol)},
                allow_multiple_allocations=shared, consumes_counters=[] if shared else
                [CounterConsumption(f"acc-{i}-counters", {"memory": mem, "halves": 2})]))
            for h in range(0 if shared else 2):
                inventory.add_device(Device(
                    f"acc-{i}-half-{h}", attributes={**attrs, "partition": True},
                    capacity={"memory": Capacity(mem // 2)}, data={"parent": i, "half": h},
                    consumes_counters=[CounterConsumption(f"acc-{i}-counters", {"memory": mem // 2, "halves": 1})]))

    @hookimpl
    def dra_config_types(self):
        return [ExampleConfig]

    @hookimpl
    def dra_create_partition(self, ctx, device):  # a crash in here: the framework's pending record
        if "parent" not in device.device.data:
            return None
        write_state_file(self.ctx.state_dir / "partitions" / device.name, ctx.claim.uid)
        return {"device": device.name}

    @hookimpl
    def dra_destroy_partition(self, record):  # also for a pending {"device", "pending": True}
        (self.ctx.state_dir / "partitions" / record["device"]).unlink(missing_ok=True)

    @hookimpl
    def dra_prepare(self, ctx, devices):
        result = PrepareResult()
        for d in devices:
            mode = d.configs[-1].mode if d.configs else "normal"
            env = {"EXAMPLE_DEVICE": d.name, "EXAMPLE_MODE": mode}
            result.devices[d.name] = PreparedDeviceEdits(ContainerEdits(env=env))
        return result

    @hookimpl
    def dra_unprepare(self, stored):  # nothing to undo: partitions are destroyed by their own hook
        return None


@hookimpl
def dra_register_backends(register):
    register("example", ExampleBackend, options=Options)

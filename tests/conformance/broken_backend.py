"""A backend with the defects the conformance suite must catch, each switched on by an option.
Installed into a temporary site dir (module + dist-info entry point) by test_suite_catches.py."""
from pathlib import Path

from pydantic import ConfigDict, Field

from dra_framework.api import (BaseOptions, ContainerEdits, Device, OpaqueConfig, PreparedDeviceEdits, PrepareResult,
                               hookimpl)


class Options(BaseOptions):
    unstable_names: bool = Field(False, alias="unstableNames")      # rediscovery renames devices
    leak: bool = False                                             # unprepare forgets the claim's file
    lenient_config: bool = Field(False, alias="lenientConfig")     # unknown config fields ignored
    act_before_record: bool = Field(False, alias="actBeforeRecord")  # side effect first, journal after


class StrictConfig(OpaqueConfig):
    api_version = "broken.dra.dev/v1"
    kind = "BrokenConfig"
    level: int = 0


class LenientConfig(StrictConfig):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class Broken:
    def __init__(self, options, context):
        self.o, self.ctx, self.calls = options, context, 0

    @hookimpl
    def dra_discover(self, inventory):
        self.calls += 1
        suffix = f"-{self.calls}" if self.o.unstable_names else ""
        for i in range(2):
            inventory.add_device(Device(f"dev-{i}{suffix}", attributes={"index": i}))

    @hookimpl
    def dra_config_types(self):
        return [LenientConfig if self.o.lenient_config else StrictConfig]

    @hookimpl
    async def dra_prepare(self, ctx, devices):
        marker = self.ctx.state_dir / "claims" / ctx.claim.uid
        marker.parent.mkdir(parents=True, exist_ok=True)
        if not self.o.act_before_record:
            await ctx.record("marker", str(marker))
        marker.write_text("prepared")
        if self.o.act_before_record:
            await ctx.record("marker", str(marker))
        return PrepareResult(devices={d.name: PreparedDeviceEdits(ContainerEdits(env={"BROKEN": d.name}))
                                      for d in devices})

    @hookimpl
    def dra_unprepare(self, stored):
        if not self.o.leak and stored.journal.get("marker"):
            Path(stored.journal["marker"]).unlink(missing_ok=True)


@hookimpl
def dra_register_backends(register):
    register("broken", Broken, options=Options)

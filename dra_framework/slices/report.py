"""What the ResourceSlice checks report: :class:`Issue` (one problem, naming pool, device and
field) and :class:`Report` (issues of one publishing pass: invalid devices and counter sets,
dropped fields, warnings). Re-exported by :mod:`dra_framework.slices.validate`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# --- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem found in a pool. ``device`` is None for pool-level or counter-set problems."""

    pool: str
    device: str | None
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"pool {self.pool!r}"
        if self.device is not None:
            where += f" device {self.device!r}"
        return f"{where}: {self.field}: {self.message}"


@dataclass
class Report:
    """Result of validating (and publishing) a driver's pools.

    ``invalid_devices`` maps a published pool name to the devices left out. The lead wires this to
    a log line, a metric, an Event and readiness (false while a pool has invalid devices).
    ``dropped_fields`` lists fields the API server removed (feature gate off), by pool.
    """

    issues: list[Issue] = field(default_factory=list)
    invalid_devices: dict[str, set[str]] = field(default_factory=dict)
    invalid_counter_sets: dict[str, set[str]] = field(default_factory=dict)
    dropped_fields: dict[str, set[str]] = field(default_factory=dict)
    published_devices: dict[str, int] = field(default_factory=dict)

    def add(self, issue: Issue) -> None:
        self.issues.append(issue)

    def invalid(self, pool: str, device: str, fld: str, msg: str) -> None:
        self.issues.append(Issue(pool, device, fld, msg))
        self.invalid_devices.setdefault(pool, set()).add(device)

    def warn(self, pool: str, device: str | None, fld: str, msg: str) -> None:
        self.issues.append(Issue(pool, device, fld, msg, "warning"))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when every device and counter set was published (warnings allowed)."""
        return not self.errors

    def merge(self, other: "Report") -> None:
        self.issues.extend(other.issues)
        for src, dst in ((other.invalid_devices, self.invalid_devices),
                         (other.invalid_counter_sets, self.invalid_counter_sets),
                         (other.dropped_fields, self.dropped_fields)):
            for k, v in src.items():
                dst.setdefault(k, set()).update(v)
        self.published_devices.update(other.published_devices)

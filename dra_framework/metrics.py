"""Prometheus metrics of the node daemon (prometheus-client), served on ``--metrics-port``.

Names follow Prometheus conventions: ``dra_framework_`` prefix, base units (seconds), ``_total``
for counters. Every series carries the ``driver`` label, except the API server's, which the
process shares.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Buckets from 0.5 ms: framework overhead is in the low milliseconds, hardware work in seconds.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 45)

OPERATION_SECONDS = Histogram(
    "dra_framework_operation_duration_seconds",
    "Latency of NodePrepareResources / NodeUnprepareResources per claim.",
    ["driver", "operation"], buckets=_BUCKETS, registry=REGISTRY)
OPERATION_ERRORS = Counter(
    "dra_framework_operation_errors_total",
    "Failed prepare/unprepare of a claim, by reason.",
    ["driver", "operation", "reason"], registry=REGISTRY)
INFLIGHT = Gauge(
    "dra_framework_inflight_operations",
    "Prepare/unprepare calls of claims in progress.", ["driver", "operation"], registry=REGISTRY)
PREPARED_CLAIMS = Gauge(
    "dra_framework_prepared_claims", "Claims prepared on this node.", ["driver"], registry=REGISTRY)
INVALID_DEVICES = Gauge(
    "dra_framework_invalid_devices",
    "Devices left out of the ResourceSlices because they break the API server's rules.",
    ["driver", "pool"], registry=REGISTRY)
SLICE_WRITES = Counter(
    "dra_framework_resourceslice_writes_total",
    "ResourceSlice create/update/delete calls.", ["driver", "verb"], registry=REGISTRY)
UNHEALTHY_DEVICES = Gauge(
    "dra_framework_unhealthy_devices", "Devices whose health is not Healthy.", ["driver"], registry=REGISTRY)
CHECKPOINT_PROBLEMS = Counter(
    "dra_framework_checkpoint_problems_total",
    "Checkpoints found corrupt, truncated or of a newer version and moved aside.", ["driver"], registry=REGISTRY)


class DriverMetrics:
    """The metrics sink one driver's engine and publisher write to."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        # Label lookups cost more than the update itself; these run on every kubelet call.
        self._seconds = {op: OPERATION_SECONDS.labels(driver, op) for op in ("prepare", "unprepare")}
        self._inflight = {op: INFLIGHT.labels(driver, op) for op in ("prepare", "unprepare")}
        self._prepared = PREPARED_CLAIMS.labels(driver)

    def observe(self, operation: str, seconds: float, error_reason: str | None = None) -> None:
        child = self._seconds.get(operation)
        (child if child is not None else OPERATION_SECONDS.labels(self.driver, operation)).observe(seconds)
        if error_reason:
            OPERATION_ERRORS.labels(self.driver, operation, error_reason).inc()

    def observe_prepare(self, seconds: float, error_reason: str | None = None) -> None:
        self.observe("prepare", seconds, error_reason)

    def observe_unprepare(self, seconds: float, error_reason: str | None = None) -> None:
        self.observe("unprepare", seconds, error_reason)

    def inflight(self, delta: int, operation: str = "prepare") -> None:
        child = self._inflight.get(operation)
        (child if child is not None else INFLIGHT.labels(self.driver, operation)).inc(delta)

    def set_prepared_claims(self, n: int) -> None:
        self._prepared.set(n)

    def set_invalid_devices(self, pool: str, n: int) -> None:
        INVALID_DEVICES.labels(self.driver, pool).set(n)

    def slice_write(self, verb: str) -> None:
        SLICE_WRITES.labels(self.driver, verb).inc()

    def set_unhealthy(self, n: int) -> None:
        UNHEALTHY_DEVICES.labels(self.driver).set(n)

    def checkpoint_problem(self) -> None:
        CHECKPOINT_PROBLEMS.labels(self.driver).inc()

API_REACHABLE = Gauge(
    "dra_framework_api_server_reachable",
    "1 while the API server answered the last request, 0 after a transport failure (refused, "
    "timed out, TLS); kubelet calls are served either way.", registry=REGISTRY)
API_UNREACHABLE = Counter(
    "dra_framework_api_unreachable_total",
    "API requests that got no HTTP answer (each is retried).", registry=REGISTRY)

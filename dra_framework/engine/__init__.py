"""Prepare/unprepare engine of one DRA driver: the crash-safe checkpoint and its typed entries,
opaque config resolution, the engine the kubelet servicers call, and the janitor for interrupted
prepares."""
from .checkpoint import (
    PREPARE_COMPLETED,
    PREPARE_STARTED,
    SCHEMA_VERSION,
    Checkpoint,
    CheckpointError,
    CheckpointProblem,
    checkpoint_path,
    read_boot_id,
)
from .claims_api import lightkube_claim_getter, lightkube_status_writer
from .configs import ConfigError, ConfigTypes, decode_stored, decode_strict, driver_configs
from .engine import PrepareEngine
from .entry import ClaimEntry, DeviceRecord, PartitionEntry, PreparedRecord
from .interfaces import ClaimError, ClaimGetter, EngineMetrics, NullMetrics, StatusWriter
from .janitor import Janitor

__all__ = [
    "PREPARE_COMPLETED", "PREPARE_STARTED", "SCHEMA_VERSION", "Checkpoint", "CheckpointError",
    "CheckpointProblem", "checkpoint_path", "read_boot_id", "lightkube_claim_getter",
    "lightkube_status_writer", "ConfigError", "ConfigTypes", "decode_stored", "decode_strict",
    "driver_configs", "ClaimError", "ClaimGetter", "EngineMetrics", "NullMetrics", "PrepareEngine",
    "StatusWriter", "Janitor", "ClaimEntry", "DeviceRecord", "PartitionEntry", "PreparedRecord",
]

"""The AEP side: client, delivery ledger, exactly-once deliverer, setup and doctor (no Dagster)."""

from stripe_aep.aep.client import AepClient, BatchMetrics, BatchState, BatchStatus
from stripe_aep.aep.deliver import DeliveryReport, XdmFile, deliver
from stripe_aep.aep.doctor import Check, doctor_aep
from stripe_aep.aep.errors import (
    AepBatchFailed,
    AepError,
    BatchError,
    ConfigError,
    FileTooLargeError,
)
from stripe_aep.aep.ledger import BatchLedger, DeliveryState
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import resolve_dataset_id, run_setup

__all__ = [
    "AepBatchFailed",
    "AepClient",
    "AepError",
    "AepSettings",
    "BatchError",
    "BatchLedger",
    "BatchMetrics",
    "BatchState",
    "BatchStatus",
    "Check",
    "ConfigError",
    "DeliveryReport",
    "DeliveryState",
    "FileTooLargeError",
    "XdmFile",
    "deliver",
    "doctor_aep",
    "resolve_dataset_id",
    "run_setup",
]

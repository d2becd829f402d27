"""The learning path's vocabularies: why a fine-tuning runs, what a request and a run came to."""
from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a fine-tuning was requested; ``examples`` and ``schedule`` only train when enough is new."""

    START_TRAINING = "start_training"
    EXAMPLES = "examples"
    SCHEDULE = "schedule"
    MANUAL = "manual"


class RequestStatus(StrEnum):
    """What a webhook event or a fine-tuning request did."""

    QUEUED = "queued"
    COALESCED = "coalesced"
    IGNORED = "ignored"


class RunStatus(StrEnum):
    """How a fine-tuning run ended: its candidate promoted or rejected, or no training at all."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    SKIPPED = "skipped"

"""The RQ name ``backend.cron.scheduled_fine_tune`` of jobs queued by older schedulers (:mod:`backend.learning.schedule`)."""
from ..learning.schedule import scheduled_fine_tune

__all__ = ["scheduled_fine_tune"]

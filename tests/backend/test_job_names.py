"""Jobs queued under the RQ names of earlier versions still find their functions."""
from __future__ import annotations

import pytest
from redis import Redis
from rq.job import Job

from backend.autoannotate.annotate import annotate_task
from backend.inference.jobs import SEGMENT_FRAME_JOB, SEGMENT_JOB, segment, segment_frame
from backend.learning.events import collect, remove
from backend.learning.finetune import fine_tune
from backend.learning.schedule import scheduled_fine_tune

STORED_NAMES = {
    "backend.jobs.segment": segment,
    "backend.jobs.segment_frame": segment_frame,
    "backend.learning.collect": collect,
    "backend.learning.remove": remove,
    "backend.learning.fine_tune": fine_tune,
    "backend.autoannotate.annotate_task": annotate_task,
    "backend.cron.scheduled_fine_tune": scheduled_fine_tune,
}


@pytest.mark.parametrize("name", sorted(STORED_NAMES))
def test_a_job_stored_under_an_old_name_runs_the_current_function(name, redis_url):
    connection = Redis.from_url(redis_url)
    stored = Job.create(name, args=({},), connection=connection)
    stored.save()
    assert Job.fetch(stored.id, connection=connection).func is STORED_NAMES[name]


def test_click_jobs_are_still_queued_under_their_stable_names():
    assert (SEGMENT_JOB, SEGMENT_FRAME_JOB) == ("backend.jobs.segment", "backend.jobs.segment_frame")

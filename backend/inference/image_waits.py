"""Click jobs whose image is still downloading wait beside the worker's inference loop, not in it.

A worker runs one job at a time. A click on an image that trickles in would hold the worker for
its whole download (up to ``IMAGE_DOWNLOAD_TIMEOUT``) while another annotator's click, whose
pixels are already there, waits behind it. So before a click job runs, the worker asks the image
fetcher whether the image is there (cached, a local file, or a source that just failed); when it
is not, the job is set aside: its download runs in the prefetcher's thread pool, the worker takes
the next job, and when the download ends (image or error) the job goes back to the front of its
queue, where the next free worker runs it on pixels that are there. A job is set aside once
(``meta["waited_for_image"]``): the second time it runs whatever the cache holds (a download that
failed answers its error then).

While set aside the job stays ``queued`` in RQ with the holding worker's name in
``meta["held_by"]``: the web process cancels it at ``PREDICT_TIMEOUT`` as it cancels any click
nobody started, answers 503 as soon as the holding worker stops sending heartbeats (killed while
the image downloaded), and a job cancelled or expired meanwhile is not put back.
A stopping worker puts back the jobs it holds, so another worker runs them.
"""
from __future__ import annotations

import logging
import threading

from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from ..common.errors import BackendError
from .jobs import SEGMENT_JOB, SegmentRequest
from .prefetch import Prefetcher

logger = logging.getLogger(__name__)

#: Job meta key of a click that was set aside once already.
WAITED = "waited_for_image"
#: Job meta key naming the worker that holds a set-aside click.
HELD_BY = "held_by"


class ImageWaits:
    """The click jobs one worker has set aside until their images are downloaded.

    Args:
        prefetcher: the worker's prefetcher (its fetcher's cache and its download threads).
    """

    def __init__(self, prefetcher: Prefetcher) -> None:
        self.prefetcher = prefetcher
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[Job, Queue]] = {}

    def set_aside(self, job: Job, queue: Queue, worker_name: str) -> bool:
        """True when ``job`` is a click whose image is not there yet: it is taken out of the loop of
        the worker ``worker_name`` until its download ends. False: run it now."""
        if job.meta.get(WAITED):
            return False
        request = _click_request(job)
        if request is None or self.prefetcher.answers_at_once(request):
            return False
        try:
            job.meta.update({WAITED: True, HELD_BY: worker_name})
            job.save_meta()
            queue.connection.lrem(queue.intermediate_queue_key, 1, job.id)   # RQ's "dequeued, not started" list
        except RedisError:
            return False                                         # cannot be put back: run it now
        with self._lock:
            self._waiting[job.id] = (job, queue)
        logger.info("click waits for its image beside the worker; the next click runs meanwhile",
                    extra={"job_id": job.id, "image": request.image})
        self.prefetcher.fetch_then(request, lambda: self._put_back(job.id))
        return True

    def _put_back(self, job_id: str) -> None:
        """Return a set-aside job to the front of its queue, unless it was cancelled or expired."""
        with self._lock:
            held = self._waiting.pop(job_id, None)
        if held is None:
            return
        job, queue = held
        try:
            if job.get_status(refresh=True) == JobStatus.QUEUED:   # not cancelled by its caller
                queue.push_job_id(job_id, at_front=True)
        except (InvalidJobOperation, NoSuchJobError):
            pass                                                 # expired: its caller gave up
        except RedisError as exc:
            logger.warning("cannot put a click back on its queue; its caller gets a 504 at PREDICT_TIMEOUT",
                           extra={"job_id": job_id, "error": str(exc)})

    def put_back_all(self) -> None:
        """Return every set-aside job to its queue (the worker is stopping)."""
        with self._lock:
            held = list(self._waiting)
        for job_id in held:
            self._put_back(job_id)


def _click_request(job: Job) -> SegmentRequest | None:
    """The click request of a ``segment`` job, ``None`` for other jobs or a malformed payload."""
    if job.func_name != SEGMENT_JOB:
        return None
    try:
        return SegmentRequest.from_payload(job.args[0])
    except (BackendError, IndexError, TypeError):
        return None

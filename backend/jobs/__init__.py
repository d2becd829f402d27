"""The RQ names of the click jobs, ``backend.jobs.segment`` and ``backend.jobs.segment_frame``.

Jobs are queued under these names (also by older versions); the code is :mod:`backend.inference.jobs`.
"""
from ..inference.jobs import segment, segment_frame

__all__ = ["segment", "segment_frame"]

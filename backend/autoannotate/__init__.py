"""Pre-annotating a whole Label Studio project from its prompts, one ``batch`` job per task.

``annotate_task`` is re-exported because jobs are queued under ``backend.autoannotate.annotate_task``.
"""
from .annotate import annotate_task

__all__ = ["annotate_task"]

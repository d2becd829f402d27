"""The learning path: webhook events → stored examples → fine-tuning → evaluated candidate → promotion.

* :mod:`~backend.learning.events`: ``POST /webhook`` events become jobs on the ``training`` queue
  (collect an annotation's examples, remove deleted ones, request a fine-tuning).
* :mod:`~backend.learning.trigger`: fine-tuning requests from Start Training, from every
  ``TRAIN_EVERY_N_EXAMPLES`` new examples, from the schedule (:mod:`backend.learning.schedule`) or from
  ``python -m backend fine-tune``; a request coalesces with the project's job still waiting.
* :mod:`~backend.learning.local`: without ``REDIS_URL``, one background thread of the web process
  runs the jobs, and fine-tuning in a child process of it.
* :mod:`~backend.learning.state`: a project's training folder, trained examples and Redis keys.
* :mod:`~backend.learning.lock`: one fine-tuning per project at a time.
* :mod:`~backend.learning.gate`: held-out split, robot-user scores, the guard set, the gate's evidence.
* :mod:`~backend.learning.evidence`: the promotion rule (paired bootstrap, margins, guard veto).
* :mod:`~backend.learning.finetune`: the fine-tuning job itself.

Fine-tuning knobs are environment variables read once into ``Settings.learning``
(:class:`backend.config.LearningConfig`). The jobs are enqueued by the names this package gives
them (``backend.learning.collect``, ``backend.learning.remove``, ``backend.learning.fine_tune``).
"""
from ..common.gate_rule import GateRule
from .events import collect, handle_event, remove
from .finetune import fine_tune
from .evidence import decide
from .gate import evaluate_model, split_examples
from .local import wait_local_jobs
from .state import KEY_PREFIX, RESULT_TTL, example_store, load_state, new_examples, training_dir
from .status import Reason, RunStatus
from .trigger import request_training

__all__ = ["GateRule", "KEY_PREFIX", "RESULT_TTL", "Reason", "RunStatus", "collect", "decide", "evaluate_model",
           "example_store", "fine_tune", "handle_event", "load_state", "new_examples", "remove",
           "request_training", "split_examples", "training_dir", "wait_local_jobs"]

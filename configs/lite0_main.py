"""The main run of the bundled default model, continued every session (warm restarts).

Each session resumes from the bundled model (``--init default``) or from the resumable state
left outside the work tree, and runs one cycle: a short warm-up to ``lr``, then poly decay to
zero over ``time_budget_s`` seconds of training steps, so that every session ends on a finished
model that can be evaluated and, if it beats the bundled one, shipped (SGDR-style restarts; a
session's compute is never lost in a half-decayed state). A segment that gets few steps (a CPU
shared with other work) restarts lower: segments 5 and 6 peak at 0.004 after 50 warm-up steps.

Data: ECSSD, COCO (listed twice: COCO images hold many objects, so doubling them keeps the model
segmenting the clicked object rather than the salient one) and DUTS-TR, about 11 k samples per
epoch. Never GrabCut (evaluation only), the horses (held back) or the images of the validation
split ``splits/val`` (held out from segment 5 on; see :mod:`fcanet_core.splits`). Start it on a
shared CPU with ``OMP_WAIT_POLICY=PASSIVE``.
"""
from pathlib import Path

from fcanet_core.train import load_config

CONFIG = load_config(Path(__file__).with_name("lite0_cpu.py")).replace(
    train_dirs=(
        "../shared/data/train/ecssd",
        "../shared/data/train/coco",
        "../shared/data/train/coco",
        "../shared/data/train/duts",
    ),
    holdout_dirs=("splits/val",),
    max_steps=100000,
    time_budget_s=6600,
    lr=0.004,
    warmup_steps=50,
    itis_start=0,
    checkpoint_every=50,
    eval_every=500,
    eval_limit=10,
    seed=15,
)

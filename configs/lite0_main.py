"""The main run of the bundled default model, continued every session (warm restarts).

Each session resumes from the bundled model (``--init default``) or from the resumable state
left outside the work tree, and runs one cycle: a short warm-up to ``lr``, then poly decay to
zero over ``time_budget_s`` seconds of training steps, so that every session ends on a finished
model that can be evaluated and, if it beats the bundled one, shipped (SGDR-style restarts; a
session's compute is never lost in a half-decayed state).

Data: ECSSD, COCO (listed twice: COCO images hold many objects, so doubling them keeps the model
segmenting the clicked object rather than the salient one) and DUTS-TR, about 11 k samples per
epoch. Never GrabCut (evaluation only) or the horses (held back). Start it on a shared CPU with
``OMP_WAIT_POLICY=PASSIVE``.
"""
from fcanet_core.train import TrainConfig

CONFIG = TrainConfig(
    arch="lite0",
    train_dirs=(
        "../shared/data/train/ecssd",
        "../shared/data/train/coco",
        "../shared/data/train/coco",
        "../shared/data/train/duts",
    ),
    pretrained=True,
    crop=256,
    short_side=352,
    scale_range=(0.7, 1.4),
    flip=True,
    batch_size=8,
    max_steps=100000,
    time_budget_s=7000,
    lr=0.007,
    warmup_steps=100,
    poly_power=0.9,
    itis_start=0,
    itis_probability=0.7,
    robot_rounds=2,
    checkpoint_every=50,
    log_every=20,
    eval_dir="../shared/data/grabcut",
    eval_every=500,
    eval_limit=10,
    eval_max_clicks=20,
    seed=10,
    num_threads=2,
    channels_last=True,
)

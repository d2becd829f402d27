"""The bundled default model: FCA-Net lite0 trained on CPU (2 cores) from the ImageNet backbone.

Data: ECSSD and COCO training folders of the shared data (never GrabCut or the horses), paths
relative to the repository root. GrabCut (its first 5 images) is used only for periodic evaluation.
The run ends after ``max_steps`` or ``time_budget_s`` seconds of training steps, whichever comes
first, with the poly LR schedule following whichever is further along. On a CPU shared with other
jobs, start it with ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads that spin-wait stall badly when a
core is taken).
"""
from fcanet_core.train import TrainConfig
from fcanet_core.training.data import CropSpec

CONFIG = TrainConfig(
    arch="lite0",
    train_dirs=("../shared/data/train/ecssd", "../shared/data/train/coco"),
    pretrained=True,
    view=CropSpec(crop=256, short_side=352, scale_range=(0.7, 1.4), flip=True),
    batch_size=8,
    max_steps=3400,
    time_budget_s=6600,
    lr=0.01,
    warmup_steps=100,
    poly_power=0.9,
    itis_start=300,
    itis_probability=0.7,
    robot_rounds=2,
    checkpoint_every=100,
    log_every=20,
    eval_dir="../shared/data/grabcut",
    eval_every=300,
    eval_limit=5,
    eval_max_clicks=20,
    seed=0,
    num_threads=2,
)

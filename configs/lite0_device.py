"""The main run's segment on a lent GPU machine (``scripts/device_train.sh``).

Same recipe as ``configs/lite0_main.py`` on the downscaled copy of its training folders that
``python -m fcanet_core.train_subset`` writes to ``data_cache/train_small`` (the device gets only
the checkout), with a batch that fills a GPU better and the step budget set by the script's time
box. Initialised from the latest weights (``--init``), so no ImageNet download is needed there.
"""
from fcanet_core.train import TrainConfig

CONFIG = TrainConfig(
    arch="lite0",
    train_dirs=("data_cache/train_small",),
    pretrained=False,
    crop=256,
    short_side=352,
    scale_range=(0.7, 1.4),
    flip=True,
    batch_size=32,
    max_steps=100000,
    time_budget_s=420,
    lr=0.01,
    warmup_steps=50,
    poly_power=0.9,
    itis_start=0,
    itis_probability=0.7,
    robot_rounds=2,
    checkpoint_every=100,
    log_every=20,
    seed=11,
    channels_last=True,
)

"""The main run's segment on a lent GPU machine (``scripts/device_train.sh``).

Same recipe as ``configs/lite0_main.py`` on the downscaled copy of its training folders that
``python -m fcanet_core.train_subset`` writes to ``data_cache/train_small`` (the device gets only
the checkout), with a batch that fills a GPU better and the step budget set by the script's time
box. Initialised from the latest weights (``--init``), so no ImageNet download is needed there.
"""
from pathlib import Path

from fcanet_core.train import load_config

CONFIG = load_config(Path(__file__).with_name("lite0_main.py")).replace(
    train_dirs=("data_cache/train_small",),
    pretrained=False,
    batch_size=32,
    time_budget_s=420,
    lr=0.01,
    warmup_steps=50,
    checkpoint_every=100,
    eval_dir=None,
    seed=11,
    num_threads=0,
)

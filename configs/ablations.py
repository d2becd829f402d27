"""Recipe ablations of the main run (``python -m fcanet_core.ablate --arms configs/ablations.py``).

Every arm starts from the same weights (the bundled model) and trains for the same seconds of
training steps on one core; the arms differ from the main run's recipe in one thing each. The
second arm repeats the first with another seed: the spread between the two is the noise floor
against which the others are read. Short arms warm up over 20 steps instead of 100.
"""
from pathlib import Path

from fcanet_core.train import load_config

BASE = load_config(Path(__file__).with_name("lite0_main.py")).replace(warmup_steps=20, seed=21)

ARMS = {
    "main recipe": {},
    "main recipe, another seed": {"seed": 22},
    "no robot rounds (ITIS clicks only)": {"robot_rounds": 0},
    "peak LR 0.014 (2x)": {"lr": 0.014},
    "peak LR 0.0035 (0.5x)": {"lr": 0.0035},
    "COCO x1 (ECSSD, COCO, DUTS once each)": {
        "train_dirs": ("../shared/data/train/ecssd", "../shared/data/train/coco", "../shared/data/train/duts"),
    },
    "crop 320 (from 256)": {"crop": 320},
    "float32 training forward, no prefetch (the step before the throughput work)": {
        "bf16_train": False, "fp32_depthwise": False, "prefetch": False,
    },
}

"""Data-parallel vs one-process training at equal time on both cores
(``python -m fcanet_core.ablate --arms configs/ablation_data_parallel.py --threads 2 --parallel 1``).

Both arms run the main recipe on the two cores for the same seconds of training steps, one after
the other: one process with two torch threads (the main run's step), or two single-threaded
processes with half of each batch each (``processes: 2``, :mod:`fcanet_core.training.parallel`), which
make more steps per second but whose BatchNorm layers see 4 crops instead of 8.
"""
from pathlib import Path

from fcanet_core.train import load_config

BASE = load_config(Path(__file__).with_name("lite0_main.py")).replace(warmup_steps=20, seed=21)

ARMS = {
    "one process, two threads (the main run's step)": {},
    "two processes, one thread each (BatchNorm over 4 crops)": {"processes": 2},
}

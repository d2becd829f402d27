"""``python -m backend.learning_bench``: the learning-from-corrections benchmark (:mod:`backend.bench.learning`)."""
import sys

from .bench.learning import main

if __name__ == "__main__":
    sys.exit(main())

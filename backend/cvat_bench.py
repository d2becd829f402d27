"""``python -m backend.cvat_bench``: one CVAT interactor call, timed (:mod:`backend.bench.cvat`)."""
import sys

from .bench.cvat import main

if __name__ == "__main__":
    sys.exit(main())

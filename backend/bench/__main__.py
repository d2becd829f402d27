"""``python -m backend.bench``: the load test of the click path (:mod:`backend.bench.load`)."""
import sys

from .load import main

sys.exit(main())

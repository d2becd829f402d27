"""``python -m backend.roundtrip_bench``: the click round trip through a real Label Studio
(:mod:`backend.bench.roundtrip`)."""
import sys

from .bench.roundtrip import main

if __name__ == "__main__":
    sys.exit(main())

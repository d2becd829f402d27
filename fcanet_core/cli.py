"""What the library's command-line tools share: logging set-up and the exit status of one action."""
from __future__ import annotations

import logging
import sys
from typing import Callable


def run_action(action: Callable[[], object], logger: logging.Logger,
               errors: tuple[type[Exception], ...] = (ValueError, OSError)) -> int:
    """Run ``action``, print its result on stdout and return 0; log one of ``errors`` and return 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = action()
    except errors as exc:
        logger.error("%s", exc)
        return 2
    sys.stdout.write(f"{result}\n")
    return 0

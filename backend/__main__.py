"""``python -m backend``: see :mod:`backend.cli`."""
from __future__ import annotations

from .cli import main

raise SystemExit(main())

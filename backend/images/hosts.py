"""Which hosts the backend may send requests to: ``ALLOWED_HOSTS`` entries matched against a URL."""
from __future__ import annotations

from typing import Sequence
from urllib.parse import urlsplit


def host_allowed(url: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether ``url``'s host is listed (``"host"`` or ``"host:port"``, ``"*"`` = any host)."""
    if "*" in allowed_hosts:
        return True
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return False
    return bool(host) and (host in allowed_hosts or (port is not None and f"{host}:{port}" in allowed_hosts))

"""Label Studio API access: base URL and token → ``Authorization`` header, requests with clear errors.

Token kinds (what Label Studio 1.23 accepts):

* a *legacy* API token (40 hex characters) is sent as ``Authorization: Token <token>``;
* a JWT *access* token is sent as ``Authorization: Bearer <token>``;
* a *personal access token* (PAT) is a JWT refresh token (claim ``token_type: "refresh"``): it is
  exchanged at ``POST <LS>/api/token/refresh/`` (``{"refresh": PAT}`` → ``{"access": JWT}``) for a
  short-lived access token, which is cached per process until 30 s before its ``exp`` claim and
  fetched again after that, or at once when Label Studio answers 401.

Credentials come from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` first, else from what Label
Studio sends to ``/setup`` (``hostname``, ``access_token``), see :meth:`Credentials.resolve`. The
token from the environment goes only to the Label Studio named in the environment.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from ..common.errors import BackendError
from ..config import Settings

logger = logging.getLogger(__name__)

REFRESH_PATH = "/api/token/refresh/"
#: Renew an access token this many seconds before it expires.
EXPIRY_MARGIN_S = 30.0
#: How long to keep an access token that carries no ``exp`` claim.
NO_EXPIRY_CACHE_S = 60.0


class LabelStudioError(BackendError):
    """Label Studio could not be used (it answered with an error, or not in the expected form)."""

    status = 502


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio could not be reached (connection refused, DNS failure, timeout)."""


class LabelStudioAuthError(LabelStudioError):
    """Label Studio refused the backend's credentials, or there were none."""


@dataclass(frozen=True)
class Credentials:
    """Where Label Studio is and the token to use there (either may be unknown).

    ``trusted`` is True for the Label Studio named by ``LABEL_STUDIO_URL``: its redirects may go to
    any host (presigned storage URLs). One learned from ``/setup`` is not trusted: the backend reads
    from it only when its host is in ``ALLOWED_HOSTS``, and its redirects must stay on allowed hosts.
    """

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    trusted: bool = False

    @classmethod
    def resolve(cls, settings: Settings, setup: "Credentials | None" = None) -> "Credentials":
        """The Label Studio to use and its token.

        With ``LABEL_STUDIO_URL`` set: that URL with ``LABEL_STUDIO_API_KEY`` (else the token sent
        to ``/setup``). Without it: what ``setup`` holds, and never ``LABEL_STUDIO_API_KEY``, so the
        environment's token cannot be sent to a host someone named in a request.
        """
        setup = setup or cls()
        if settings.label_studio_url:
            return cls(settings.label_studio_url.rstrip("/"), settings.label_studio_api_key or setup.api_key,
                       trusted=True)
        if setup.url:
            return cls(setup.url.rstrip("/"), setup.api_key, trusted=setup.trusted)
        return cls()

    def to_dict(self) -> dict:
        """JSON form, as carried by inference jobs."""
        return {"url": self.url, "api_key": self.api_key, "trusted": self.trusted}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Credentials":
        """Inverse of :meth:`to_dict` (``None`` → no credentials)."""
        data = data or {}
        return cls(data.get("url"), data.get("api_key"), bool(data.get("trusted")))


def jwt_claims(token: str) -> dict | None:
    """The payload of a well-formed JWT (signature not checked), or ``None`` for any other string."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


def describe_connection_error(exc: requests.RequestException) -> str:
    """A short human reason for a failed connection: ``connection refused``, ``timed out`` ..."""
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    for needle, reason in (("Connection refused", "connection refused"),
                           ("Name or service not known", "host name not found"),
                           ("NameResolutionError", "host name not found"),
                           ("No route to host", "no route to host"),
                           ("CERTIFICATE_VERIFY_FAILED", "TLS certificate verification failed")):
        if needle in text:
            return reason
    return type(exc).__name__


class _AccessTokenCache:
    """Process-wide cache of access tokens obtained for personal access tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
        if entry and entry[1] > time.time():
            return entry[0]
        return None

    def put(self, key: tuple[str, str], token: str, valid_until: float) -> None:
        with self._lock:
            self._tokens[key] = (token, valid_until)

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


_ACCESS_TOKENS = _AccessTokenCache()


class LabelStudioClient:
    """HTTP access to one Label Studio with one token.

    Args:
        credentials: base URL (``http(s)://host[:port][/prefix]``) and token.
        verify_ssl: verify TLS certificates.
        timeout: seconds for connecting and for each read.
        session: a ``requests.Session`` to reuse (a new one by default).
    """

    def __init__(self, credentials: Credentials, *, verify_ssl: bool = True, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.credentials = credentials
        self.verify_ssl = verify_ssl
        self.timeout = timeout
        self.session = session or requests.Session()

    @property
    def base_url(self) -> str:
        """The Label Studio base URL; :class:`LabelStudioError` when none is configured."""
        if not self.credentials.url:
            raise LabelStudioError(
                "the Label Studio URL is unknown: set LABEL_STUDIO_URL (or connect the backend from "
                "Label Studio so that /setup sends its hostname)", status=503)
        return self.credentials.url

    def absolute(self, url_or_path: str) -> str:
        """``/data/upload/...`` → ``<base>/data/upload/...``; absolute URLs are returned unchanged."""
        if urlsplit(url_or_path).scheme:
            return url_or_path
        return self.base_url + "/" + url_or_path.lstrip("/")

    def owns(self, url: str) -> bool:
        """True when ``url`` points at this Label Studio (same scheme, host and port)."""
        if not self.credentials.url:
            return False
        a, b = urlsplit(url), urlsplit(self.credentials.url)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)

    # ------------------------------------------------------------------ tokens
    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header for this Label Studio ({} without a token)."""
        token = self.credentials.api_key
        if not token:
            return {}
        if jwt_claims(token) is None:
            return {"Authorization": f"Token {token}"}
        if self._uses_pat():
            return {"Authorization": f"Bearer {self._access_token(token)}"}
        return {"Authorization": f"Bearer {token}"}

    def _cache_key(self) -> tuple[str, str]:
        return (self.base_url, self.credentials.api_key or "")

    def _access_token(self, pat: str) -> str:
        key = self._cache_key()
        cached = _ACCESS_TOKENS.get(key)
        if cached:
            return cached
        url = self.base_url + REFRESH_PATH
        try:
            response = self.session.post(url, json={"refresh": pat}, timeout=self.timeout, verify=self.verify_ssl)
        except requests.RequestException as exc:
            raise self._unavailable(exc) from None
        if response.status_code != 200:
            raise LabelStudioAuthError(
                f"Label Studio at {self.base_url} refused the personal access token "
                f"(HTTP {response.status_code} from {REFRESH_PATH}): it may be revoked or expired; "
                "create a new one, or set LABEL_STUDIO_API_KEY to a legacy token")
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise LabelStudioAuthError(
                f"unexpected answer from {url}: no 'access' token in {response.text[:200]!r}") from None
        exp = (jwt_claims(access) or {}).get("exp")
        valid_until = float(exp) - EXPIRY_MARGIN_S if isinstance(exp, (int, float)) else time.time() + NO_EXPIRY_CACHE_S
        _ACCESS_TOKENS.put(key, access, valid_until)
        logger.info("exchanged personal access token for an access token",
                    extra={"label_studio": self.base_url, "valid_s": round(valid_until - time.time())})
        return access

    def _unavailable(self, exc: requests.RequestException) -> LabelStudioUnavailable:
        return LabelStudioUnavailable(
            f"cannot reach Label Studio at {self.base_url}: {describe_connection_error(exc)}. "
            "LABEL_STUDIO_URL must be reachable from the backend (inside Docker not localhost; "
            "use the host IP or host.docker.internal)")

    # ---------------------------------------------------------------- requests
    def request(self, method: str, url_or_path: str, **kwargs: Any) -> requests.Response:
        """Send a request to this Label Studio with its auth header.

        A 401 while using a cached access token drops that token and retries once with a new one.
        Connection failures raise :class:`LabelStudioUnavailable`; HTTP errors are returned as is.
        """
        url = self.absolute(url_or_path)
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("verify", self.verify_ssl)
        response = self._send(method, url, kwargs)
        if response.status_code == 401 and self._uses_pat():
            response.close()
            _ACCESS_TOKENS.drop(self._cache_key())
            response = self._send(method, url, kwargs)
        return response

    def _uses_pat(self) -> bool:
        return (jwt_claims(self.credentials.api_key or "") or {}).get("token_type") == "refresh"

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        headers = {**(kwargs.get("headers") or {}), **self.auth_headers()}
        try:
            return self.session.request(method, url, **{**kwargs, "headers": headers})
        except requests.RequestException as exc:
            raise self._unavailable(exc) from None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call a JSON API route (``/api/...``) and return the decoded body; raise on HTTP errors."""
        response = self.request(method, urljoin("/", path), **kwargs)
        if response.status_code in (401, 403):
            raise LabelStudioAuthError(
                f"Label Studio refused {method} {path} (HTTP {response.status_code}): check LABEL_STUDIO_API_KEY")
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio answered HTTP {response.status_code} to {method} {path}: "
                                   f"{response.text[:300]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise LabelStudioError(f"Label Studio sent non-JSON for {method} {path}: {response.text[:200]!r}") from None

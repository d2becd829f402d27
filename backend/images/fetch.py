"""Task images: resolve a Label Studio image reference, download it within limits, decode to RGB.

Reference forms (``task["data"][<Image value>]``):

* ``/data/upload/<project>/<file>`` and other paths: fetched from ``<Label Studio URL>/<path>``;
* ``/data/local-files/?d=<path>``: read from ``LOCAL_FILES_DOCUMENT_ROOT`` when it is set (the path
  is taken relative to the root, like Label Studio does, and may not leave it), else over HTTP;
* ``http(s)://...``: fetched directly; the host must be Label Studio's or listed in ``ALLOWED_HOSTS``
  (so a task cannot make the backend fetch arbitrary internal addresses);
* ``s3://``, ``gs://``, ``azure-blob://``: fetched through Label Studio's presign endpoint
  ``<LS>/tasks/<task id>/presign/?fileuri=<base64url(uri)>``, which redirects to the storage.

The Label Studio token is sent only to Label Studio itself. Redirects are followed by hand: a
redirect from the Label Studio named by ``LABEL_STUDIO_URL`` may go anywhere (that is how presigned
URLs work), any other redirect must stay on allowed hosts; a Label Studio learned from ``/setup``
is an allowed host like any other. A download has one deadline for everything (connecting,
redirects, every read): ``IMAGE_DOWNLOAD_TIMEOUT`` after it started the caller gets a 504, however
slowly the source sends. Downloads stop at ``MAX_IMAGE_BYTES``; images over ``MAX_IMAGE_PIXELS``
are refused before decoding. EXIF orientation is applied (browsers apply it too, so click
coordinates match); grey, palette, RGBA, CMYK and 16-bit images become RGB uint8. Decoded images
are kept in an LRU cache bounded in images (``IMAGE_CACHE_SIZE``) and bytes (``IMAGE_CACHE_BYTES``),
keyed by their resolved location, so a second click on the same image does not download it again.
Concurrent requests for one image share one download, and a download that timed out is answered
with that timeout for ``IMAGE_DOWNLOAD_TIMEOUT`` seconds instead of being tried again at once (so
clicks queued behind a stuck source fail fast instead of each waiting the full time).
Every failure is an :class:`ImageError` whose message names only what the request named.
"""
from __future__ import annotations

import base64
import io
import logging
import os
import posixpath
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import numpy as np
import requests
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError

from ..common.deadline import Deadline, call_within
from ..common.errors import BackendError
from ..common.lru import LRUCache
from ..common.singleflight import SingleFlight
from ..config import Settings
from ..labelstudio.client import Credentials, LabelStudioClient, describe_connection_error
from .hosts import host_allowed

logger = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
#: Image locations whose download timed out, remembered per process.
RECENT_TIMEOUTS = 256
LOCAL_FILES_PATH = "/data/local-files"
MAX_REDIRECTS = 5
_CHUNK = 1 << 16


class ImageError(BackendError):
    """A task image cannot be used."""

    status = 422


class ImageReferenceError(ImageError):
    """The task's image reference is missing or malformed."""

    status = 400


class ImageNotAllowed(ImageError):
    """The image lies on a host, scheme or path the backend may not read."""

    status = 403


class ImageNotFound(ImageError):
    """The image source has no such file."""

    status = 404


class ImageTooLarge(ImageError):
    """The image exceeds ``MAX_IMAGE_BYTES`` or ``MAX_IMAGE_PIXELS``."""

    status = 413


class ImageDecodeError(ImageError):
    """The bytes are not a decodable image."""

    status = 422


class ImageSourceError(ImageError):
    """The image source could not be reached or refused the request."""

    status = 502


class ImageTimeout(ImageSourceError):
    """The download did not finish within ``IMAGE_DOWNLOAD_TIMEOUT``."""

    status = 504


@dataclass(frozen=True)
class ImageSource:
    """A resolved image location: a local ``path`` or an absolute ``url`` (exactly one is set).

    ``shown`` is the local file as the request named it (``?d=`` of a local-files reference).
    """

    path: str | None = None
    url: str | None = None
    shown: str = ""


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes to a read-only RGB uint8 array (H×W×3), EXIF orientation applied.

    Raises:
        ImageTooLarge: more than ``max_pixels`` pixels (checked before decoding the pixels).
        ImageDecodeError: not an image, truncated, or an unsupported pixel format.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, more than "
                                    f"MAX_IMAGE_PIXELS={max_pixels}")
            rgb = _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError:
        raise ImageTooLarge("image refused by the decoder: far more pixels than its file size suggests") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"cannot decode the image ({len(data)} bytes): not an image format the backend "
                               "reads (PNG, JPEG, WebP, TIFF, BMP, GIF, ...)") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageDecodeError(f"cannot decode the image ({len(data)} bytes): the file is truncated or "
                               "corrupt, or its pixel format is not supported") from None
    rgb.setflags(write=False)
    return rgb


def _to_rgb(img: Image.Image) -> np.ndarray:
    """RGB uint8 from any PIL mode; 16/32-bit integer grey is scaled from the 16-bit range."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = np.clip(np.asarray(img, dtype=np.float32) / 257.0, 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


class ImageFetcher:
    """Fetches task images for one backend configuration, with an LRU cache of decoded images.

    Args:
        settings: limits (``max_image_bytes``, ``max_image_pixels``), ``image_cache_size`` and
            ``image_cache_bytes``, ``allowed_hosts``, ``local_files_document_root``,
            ``download_timeout``, ``verify_ssl``, and the default Label Studio credentials.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: LRUCache[np.ndarray] = LRUCache(settings.image_cache_size, settings.image_cache_bytes)
        self._loads: SingleFlight[np.ndarray] = SingleFlight()
        self._timeouts: LRUCache[tuple[str, float]] = LRUCache(RECENT_TIMEOUTS, size=lambda _: 0)
        self._session = requests.Session()

    def fetch(self, url: str, task_id: int | None = None, credentials: Credentials | None = None) -> np.ndarray:
        """The image at ``url`` as a read-only RGB uint8 array (H×W×3), from the cache when possible.

        Args:
            url: the task's image reference (forms in the module docstring).
            task_id: the Label Studio task id; needed for cloud-storage URIs.
            credentials: Label Studio URL and token; default: resolved from the settings.
        """
        client = self._client(credentials)
        source = self.resolve(url, task_id, client)
        key = source if source.url else (source.path, _file_stamp(source.path))
        image = self.cache.get(key)
        if image is not None:
            logger.debug("image cache hit", extra={"image": url})
            return image
        return self._loads.run(key, lambda: self._load(key, source, client, url))

    def answers_at_once(self, url: str, task_id: int | None = None, credentials: Credentials | None = None) -> bool:
        """Whether :meth:`fetch` answers without waiting for a remote source: the image is cached or a
        local file, its source timed out a moment ago, or the reference is refused outright."""
        try:
            source = self.resolve(url, task_id, self._client(credentials))
        except BackendError:
            return True
        if not source.url:
            return True
        recent = self._timeouts.get(source)
        return self.cache.get(source) is not None or (recent is not None and recent[1] > time.monotonic())

    def _client(self, credentials: Credentials | None) -> LabelStudioClient:
        return LabelStudioClient(Credentials.resolve(self.settings, credentials),
                                 verify_ssl=self.settings.verify_ssl, timeout=self.settings.download_timeout,
                                 session=self._session)

    def _load(self, key: object, source: ImageSource, client: LabelStudioClient, url: str) -> np.ndarray:
        recent = self._timeouts.get(key)
        if recent is not None and recent[1] > time.monotonic():
            raise ImageTimeout(recent[0])
        try:
            data = self._read_file(source.path, source.shown) if source.path else self._download(source.url, client)
        except ImageTimeout as exc:
            self._timeouts.put(key, (exc.detail, time.monotonic() + self.settings.download_timeout))
            raise
        image = decode_image(data, self.settings.max_image_pixels)
        self.cache.put(key, image)
        logger.info("image loaded", extra={"image": url, "width": image.shape[1], "height": image.shape[0],
                                           "bytes": len(data)})
        return image

    # --------------------------------------------------------------- resolution
    def resolve(self, url: str, task_id: int | None, client: LabelStudioClient) -> ImageSource:
        """Map an image reference to a local path or an absolute URL (no I/O except path checks)."""
        if not isinstance(url, str) or not url.strip():
            raise ImageReferenceError(f"the task has no image reference (got {url!r})")
        url = url.strip()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in CLOUD_SCHEMES:
            if not isinstance(task_id, int) or isinstance(task_id, bool):
                raise ImageReferenceError(f"cloud storage image {url!r} needs the numeric task id for Label "
                                          "Studio's presign endpoint")
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            return ImageSource(url=client.absolute(f"/tasks/{task_id}/presign/?fileuri={fileuri}"))
        if scheme and scheme not in ("http", "https"):
            raise ImageNotAllowed(f"unsupported image URL scheme {scheme!r} in {url!r}")
        if not scheme and not url.startswith("/"):
            raise ImageReferenceError(f"image reference {url!r} is neither an absolute URL nor a path "
                                      "starting with /")
        is_local_files = parts.path.rstrip("/") == LOCAL_FILES_PATH and (not scheme or client.owns(url))
        if is_local_files and self.settings.local_files_document_root:
            return self._local_source(parts.query)
        return ImageSource(url=client.absolute(url))

    def _local_source(self, query: str) -> ImageSource:
        values = parse_qs(query, keep_blank_values=True).get("d")
        relative = values[-1] if values else ""
        if not relative:
            raise ImageReferenceError("local-files image reference has no ?d=<path>")
        root = Path(self.settings.local_files_document_root).resolve()
        path = (root / posixpath.normpath(relative).lstrip("/")).resolve()
        if not path.is_relative_to(root):
            raise ImageNotAllowed(f"local-files path {relative!r} leaves LOCAL_FILES_DOCUMENT_ROOT")
        return ImageSource(path=str(path), shown=relative)

    def _check_host(self, url: str, client: LabelStudioClient) -> None:
        if (client.credentials.trusted and client.owns(url)) or host_allowed(url, self.settings.allowed_hosts):
            return
        raise ImageNotAllowed(
            f"image host {urlsplit(url).netloc!r} is not allowed: images may come from the Label Studio named "
            "by LABEL_STUDIO_URL or hosts listed in ALLOWED_HOSTS")

    # ------------------------------------------------------------------ reading
    def _read_file(self, path: str, shown: str) -> bytes:
        try:
            size = os.path.getsize(path)
            if size > self.settings.max_image_bytes:
                raise ImageTooLarge(f"image file is {size} bytes, more than MAX_IMAGE_BYTES="
                                    f"{self.settings.max_image_bytes}")
            with open(path, "rb") as f:
                return f.read(self.settings.max_image_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ImageNotFound(f"local-files image {shown!r} not found under LOCAL_FILES_DOCUMENT_ROOT") from None
        except PermissionError:
            raise ImageNotAllowed(f"no permission to read local-files image {shown!r}") from None

    def _download(self, url: str, client: LabelStudioClient) -> bytes:
        """The bytes at ``url`` (redirects followed), or :class:`ImageTimeout` at the deadline."""
        deadline = Deadline(self.settings.download_timeout)

        def timed_out() -> ImageTimeout:
            return ImageTimeout(f"the image download from {_shown(url, client)} did not finish within "
                                f"IMAGE_DOWNLOAD_TIMEOUT={self.settings.download_timeout:g}s")

        return call_within(deadline.seconds, lambda: self._follow(url, client, deadline), timed_out,
                           name="image-download")

    def _follow(self, url: str, client: LabelStudioClient, deadline: Deadline) -> bytes:
        self._check_host(url, client)
        for _ in range(MAX_REDIRECTS + 1):
            from_label_studio = client.owns(url)
            response = self._get(url, client, from_label_studio, deadline)
            with response:
                if not response.is_redirect:
                    self._raise_for_status(response, url, client, from_label_studio)
                    return self._read_limited(response, url, client, deadline)
                target = urljoin(url, response.headers["Location"])
            if not (from_label_studio and client.credentials.trusted):
                self._check_host(target, client)
            url = target
        raise ImageSourceError(f"more than {MAX_REDIRECTS} redirects while fetching {_shown(url, client)}")

    def _get(self, url: str, client: LabelStudioClient, from_label_studio: bool,
             deadline: Deadline) -> requests.Response:
        timeout = max(deadline.remaining(), 0.001)
        if from_label_studio:
            return client.request("GET", url, stream=True, allow_redirects=False, timeout=timeout)
        try:
            return self._session.get(url, stream=True, allow_redirects=False, timeout=timeout,
                                     verify=self.settings.verify_ssl)
        except requests.RequestException as exc:
            raise ImageSourceError(f"cannot download image from {_shown(url, client)}: "
                                   f"{describe_connection_error(exc)}") from None

    @staticmethod
    def _raise_for_status(response: requests.Response, url: str, client: LabelStudioClient,
                          from_label_studio: bool) -> None:
        code = response.status_code
        if code < 400:
            return
        shown = _shown(url, client)
        if code == 404:
            raise ImageNotFound(f"no image at {shown} (HTTP 404)")
        if code in (401, 403) and from_label_studio:
            hint = ("set LABEL_STUDIO_API_KEY to a valid legacy token or personal access token"
                    if client.credentials.api_key else
                    "no token configured: set LABEL_STUDIO_API_KEY (or connect the backend from Label Studio)")
            raise ImageSourceError(f"Label Studio refused to serve {shown} (HTTP {code}): {hint}")
        raise ImageSourceError(f"image source answered HTTP {code} for {shown}")

    def _read_limited(self, response: requests.Response, url: str, client: LabelStudioClient,
                      deadline: Deadline) -> bytes:
        """The body, read as it arrives (``read1``: a source that drips bytes cannot hold one read
        open), stopping at ``MAX_IMAGE_BYTES`` and at the deadline."""
        limit = self.settings.max_image_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ImageTooLarge(f"image is {declared} bytes, more than MAX_IMAGE_BYTES={limit}")
        buffer = bytearray()
        try:
            while chunk := response.raw.read1(_CHUNK, decode_content=True):
                buffer += chunk
                if len(buffer) > limit:
                    raise ImageTooLarge(f"image is more than MAX_IMAGE_BYTES={limit} bytes")
                if deadline.passed:
                    raise ImageTimeout(f"the image download from {_shown(url, client)} passed "
                                       f"IMAGE_DOWNLOAD_TIMEOUT={self.settings.download_timeout:g}s")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            reason = "timed out" if isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError)) else \
                type(exc).__name__
            raise ImageSourceError(f"download of {_shown(url, client)} broke off: {reason}") from None
        return bytes(buffer)


def _shown(url: str, client: LabelStudioClient) -> str:
    """``url`` for messages: query strings (signatures of presigned URLs) only for Label Studio URLs."""
    if client.owns(url):
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _file_stamp(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) so that a changed local file is not served from the cache."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def get_fetcher(settings: Settings) -> ImageFetcher:
    """The process-wide :class:`ImageFetcher` for ``settings`` (its cache is shared by all requests)."""
    return ImageFetcher(settings)

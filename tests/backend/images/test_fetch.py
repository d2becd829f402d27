"""Task images: resolution, real HTTP downloads with Label Studio auth, limits, hosts, decoding, cache."""
from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from backend.bench.harness import free_port
from backend.images.fetch import (ImageDecodeError, ImageFetcher, ImageNotAllowed, ImageNotFound, ImageReferenceError,
                                  ImageSourceError, ImageTooLarge, decode_image)
from backend.labelstudio.client import Credentials, LabelStudioError, LabelStudioUnavailable

UPLOAD = "/data/upload/1/a6b80a50-disc.png"
LOCAL = "/data/local-files/?d=ds1/disc2.png"


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def served(ls_files, relative: str) -> np.ndarray:
    return np.asarray(Image.open(ls_files.root / relative).convert("RGB"))


def test_upload_path_is_fetched_from_label_studio_with_the_legacy_token(ls_files, make_settings):
    image = ImageFetcher(make_settings()).fetch(UPLOAD, task_id=1)
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, served(ls_files, "upload/1/a6b80a50-disc.png"))
    assert ls_files.requests[-1] == ("GET", UPLOAD, f"Token {ls_files.token}")
    assert not image.flags.writeable


def test_repeated_fetches_come_from_the_cache_which_is_bounded(ls_files, make_settings):
    fetcher = ImageFetcher(make_settings(IMAGE_CACHE_SIZE="1"))
    before = ls_files.count("/data/")
    fetcher.fetch(UPLOAD)
    fetcher.fetch(UPLOAD)
    assert ls_files.count("/data/") == before + 1
    fetcher.fetch(LOCAL)                              # evicts UPLOAD
    fetcher.fetch(UPLOAD)
    assert ls_files.count("/data/") == before + 3


def test_local_files_over_http_and_from_the_document_root_agree(ls_files, make_settings):
    over_http = ImageFetcher(make_settings()).fetch(LOCAL)
    before = ls_files.count("/data/local-files")
    from_disk = ImageFetcher(make_settings(LOCAL_FILES_DOCUMENT_ROOT=str(ls_files.root / "local"))).fetch(LOCAL)
    assert ls_files.count("/data/local-files") == before
    np.testing.assert_array_equal(over_http, from_disk)


def test_absolute_label_studio_url_to_local_files_uses_the_document_root(ls_files, make_settings):
    fetcher = ImageFetcher(make_settings(LOCAL_FILES_DOCUMENT_ROOT=str(ls_files.root / "local")))
    before = ls_files.count("/data/local-files")
    fetcher.fetch(ls_files.url + LOCAL)
    assert ls_files.count("/data/local-files") == before


@pytest.mark.parametrize("d", ["../upload/1/a6b80a50-disc.png", "ds1/../../upload/1/a6b80a50-disc.png",
                               "ds1/escape/x.png"])
def test_local_files_cannot_leave_the_document_root(ls_files, make_settings, d):
    link = ls_files.root / "local" / "ds1" / "escape"
    if not link.exists():
        link.symlink_to(ls_files.root / "upload" / "1")
    fetcher = ImageFetcher(make_settings(LOCAL_FILES_DOCUMENT_ROOT=str(ls_files.root / "local")))
    with pytest.raises(ImageNotAllowed, match="leaves LOCAL_FILES_DOCUMENT_ROOT") as err:
        fetcher.fetch(f"/data/local-files/?d={d}")
    assert err.value.status == 403


def test_absolute_local_files_path_is_relative_to_the_root_like_label_studio(ls_files, make_settings):
    fetcher = ImageFetcher(make_settings(LOCAL_FILES_DOCUMENT_ROOT=str(ls_files.root / "local")))
    assert fetcher.fetch("/data/local-files/?d=/ds1/disc2.png").shape == (240, 320, 3)
    with pytest.raises(ImageNotFound):
        fetcher.fetch("/data/local-files/?d=/etc/passwd")


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png",
                                 "http://localhost:1/x.png"])
def test_hosts_other_than_label_studio_are_refused_by_default(make_settings, url):
    with pytest.raises(ImageNotAllowed, match="not allowed") as err:
        ImageFetcher(make_settings()).fetch(url)
    assert err.value.status == 403


def test_allowed_hosts_open_other_hosts_and_get_no_token(ls_files, make_settings):
    ls_files.add("public/p.png", png(np.full((4, 5, 3), 7, np.uint8)))
    url = ls_files.other_url + "/public/p.png"
    image = ImageFetcher(make_settings(ALLOWED_HOSTS="localhost")).fetch(url)
    assert image.shape == (4, 5, 3)
    assert ls_files.requests[-1] == ("GET", "/public/p.png", None)


def test_redirects_from_other_hosts_must_stay_on_allowed_hosts(ls_files, make_settings):
    port = ls_files.url.rsplit(":", 1)[1]
    url = f"{ls_files.other_url}/redirect?to=http://127.0.0.2:{port}/public/p.png"
    with pytest.raises(ImageNotAllowed, match="127.0.0.2"):
        ImageFetcher(make_settings(ALLOWED_HOSTS="localhost")).fetch(url)


def test_cloud_uri_goes_through_label_studio_presign_and_the_token_stays_home(ls_files, make_settings):
    ls_files.add("storage/bucket/dir/c.png", png(np.full((6, 8, 3), 200, np.uint8)))
    image = ImageFetcher(make_settings()).fetch("s3://bucket/dir/c.png", task_id=42)
    assert image.shape == (6, 8, 3) and image[0, 0, 0] == 200
    fileuri = base64.urlsafe_b64encode(b"s3://bucket/dir/c.png").decode()
    assert ("GET", f"/tasks/42/presign/?fileuri={fileuri}", f"Token {ls_files.token}") in ls_files.requests
    assert ls_files.requests[-1][2] is None          # the storage request carried no Label Studio token
    with pytest.raises(ImageReferenceError, match="needs the numeric task id"):
        ImageFetcher(make_settings()).fetch("gs://bucket/dir/c.png")


def test_size_limits(ls_files, make_settings):
    with pytest.raises(ImageTooLarge, match="MAX_IMAGE_BYTES") as err:
        ImageFetcher(make_settings(MAX_IMAGE_BYTES="1000")).fetch(UPLOAD)
    assert err.value.status == 413
    with pytest.raises(ImageTooLarge, match="MAX_IMAGE_BYTES"):
        ImageFetcher(make_settings(MAX_IMAGE_BYTES="1000", LOCAL_FILES_DOCUMENT_ROOT=str(ls_files.root / "local"))
                     ).fetch(LOCAL)
    with pytest.raises(ImageTooLarge, match="MAX_IMAGE_PIXELS"):
        ImageFetcher(make_settings(MAX_IMAGE_PIXELS=str(320 * 240 - 1))).fetch(UPLOAD)


def test_corrupt_and_truncated_images_are_422(ls_files, make_settings):
    whole = (ls_files.root / "upload/1/a6b80a50-disc.png").read_bytes()
    ls_files.add("upload/1/truncated.png", whole[: len(whole) // 2])
    ls_files.add("upload/1/text.png", b"this is not an image")
    fetcher = ImageFetcher(make_settings())
    for name in ("truncated.png", "text.png"):
        with pytest.raises(ImageDecodeError, match="cannot decode") as err:
            fetcher.fetch(f"/data/upload/1/{name}")
        assert err.value.status == 422


def test_missing_file_and_refused_token(ls_files, make_settings):
    with pytest.raises(ImageNotFound, match="HTTP 404"):
        ImageFetcher(make_settings()).fetch("/data/upload/1/missing.png")
    with pytest.raises(ImageSourceError, match=r"refused to serve .* \(HTTP 401\).*LABEL_STUDIO_API_KEY") as err:
        ImageFetcher(make_settings(LABEL_STUDIO_API_KEY="wrong")).fetch(UPLOAD)
    assert err.value.status == 502


def test_unreachable_label_studio_is_a_clear_error(make_settings):
    fetcher = ImageFetcher(make_settings(LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(LabelStudioUnavailable, match="cannot reach Label Studio .*connection refused") as err:
        fetcher.fetch(UPLOAD)
    assert err.value.status == 502 and time.monotonic() - started < 10


def test_credentials_from_setup_are_used_when_the_env_has_none(ls_files, make_settings):
    fetcher = ImageFetcher(make_settings(LABEL_STUDIO_URL=None, LABEL_STUDIO_API_KEY=None, ALLOWED_HOSTS="127.0.0.1"))
    with pytest.raises(LabelStudioError, match="Label Studio URL is unknown"):
        fetcher.fetch(UPLOAD)
    image = fetcher.fetch(UPLOAD, credentials=Credentials(ls_files.url, ls_files.token))
    assert image.shape == (240, 320, 3)


def test_a_label_studio_learned_from_setup_is_only_an_allowed_host(ls_files, make_settings):
    fetcher = ImageFetcher(make_settings(LABEL_STUDIO_URL=None, LABEL_STUDIO_API_KEY=None))
    before = len(ls_files.requests)
    with pytest.raises(ImageNotAllowed, match="ALLOWED_HOSTS"):
        fetcher.fetch(UPLOAD, credentials=Credentials(ls_files.url, ls_files.token))
    assert len(ls_files.requests) == before, "nothing was sent to a host that is not allowed"
    port = ls_files.url.rsplit(":", 1)[1]
    elsewhere = f"{ls_files.url}/redirect?to=http://localhost:{port}/public/p.png"
    ls_files.add("public/p.png", png(np.full((4, 5, 3), 7, np.uint8)))
    allowed = ImageFetcher(make_settings(LABEL_STUDIO_URL=None, LABEL_STUDIO_API_KEY=None, ALLOWED_HOSTS="127.0.0.1"))
    with pytest.raises(ImageNotAllowed, match="localhost"):   # its redirects stay on allowed hosts too
        allowed.fetch(elsewhere, credentials=Credentials(ls_files.url, ls_files.token))


@pytest.mark.parametrize("url, error", [("", ImageReferenceError), (None, ImageReferenceError),
                                        ("images/a.png", ImageReferenceError), ("file:///etc/passwd", ImageNotAllowed),
                                        ("ftp://host/a.png", ImageNotAllowed)])
def test_malformed_references(make_settings, url, error):
    with pytest.raises(error):
        ImageFetcher(make_settings()).fetch(url)


# ------------------------------------------------------------------------- decoding
def test_grey_rgba_palette_and_16_bit_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    np.testing.assert_array_equal(decode_image(png(grey), 100), np.repeat(grey[:, :, None], 3, axis=2))
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 90, 10
    assert decode_image(png(rgba), 100)[0, 0].tolist() == [90, 0, 0]
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), 100)
    np.testing.assert_array_equal(decoded[..., 1], np.round(deep / 257.0).astype(np.uint8))
    palette = Image.fromarray(grey).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert decode_image(buffer.getvalue(), 100).shape == (3, 4, 3)


def test_exif_orientation_is_applied():
    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6                                  # rotate 90° clockwise for display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue(), 10_000).shape == (40, 20, 3)


# ------------------------------------------------------------------------- hostile sources
def test_a_source_that_drips_bytes_is_cut_off_at_the_overall_deadline(ls_files, make_settings):
    fetcher = ImageFetcher(make_settings(IMAGE_DOWNLOAD_TIMEOUT="2"))
    started = time.monotonic()
    with pytest.raises(ImageSourceError, match="IMAGE_DOWNLOAD_TIMEOUT=2s") as err:
        fetcher.fetch("/drip/0.2/1/a6b80a50-disc.png")       # each read is quick, the whole never ends
    assert err.value.status == 504
    assert time.monotonic() - started < 3


def test_messages_name_only_what_the_request_named(ls_files, make_settings):
    root = ls_files.root / "local"
    fetcher = ImageFetcher(make_settings(LOCAL_FILES_DOCUMENT_ROOT=str(root)))
    with pytest.raises(ImageNotFound) as err:
        fetcher.fetch("/data/local-files/?d=ds1/nothing.png")
    assert "'ds1/nothing.png'" in err.value.detail and str(root) not in err.value.detail
    ls_files.add("upload/1/junk.png", b"\x00" * 64)
    with pytest.raises(ImageDecodeError) as err:
        fetcher.fetch("/data/upload/1/junk.png")
    assert " at 0x" not in err.value.detail and "<" not in err.value.detail


def test_the_cache_is_bounded_in_bytes(ls_files, make_settings):
    one_image = 320 * 240 * 3
    fetcher = ImageFetcher(make_settings(IMAGE_CACHE_BYTES=str(one_image + 10)))
    fetcher.fetch(UPLOAD)
    fetcher.fetch(LOCAL)                              # evicts UPLOAD: two do not fit
    assert len(fetcher.cache) == 1 and fetcher.cache.nbytes == one_image
    before = ls_files.count("/data/")
    fetcher.fetch(UPLOAD)
    assert ls_files.count("/data/") == before + 1

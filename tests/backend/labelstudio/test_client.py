"""Label Studio tokens against a real local HTTP server: legacy, access JWT, PAT exchange and caching."""
from __future__ import annotations

import time

import pytest

from backend.bench.harness import free_port
from backend.config import Settings
from backend.images.fetch import ImageFetcher
from backend.labelstudio.client import (Credentials, LabelStudioAuthError, LabelStudioClient, LabelStudioError,
                                        LabelStudioUnavailable, jwt_claims)


def refreshes(ls_files) -> int:
    return sum(1 for method, path, _ in ls_files.requests if method == "POST" and path == "/api/token/refresh/")


def test_token_kinds_map_to_their_header(ls_files, jwt_token):
    assert LabelStudioClient(Credentials(ls_files.url, "abc")).auth_headers() == {"Authorization": "Token abc"}
    access = jwt_token({"token_type": "access", "exp": int(time.time()) + 60})
    assert LabelStudioClient(Credentials(ls_files.url, access)).auth_headers() == {"Authorization": f"Bearer {access}"}
    assert LabelStudioClient(Credentials(ls_files.url, None)).auth_headers() == {}


def test_pat_is_exchanged_once_and_the_access_token_cached(ls_files, pat):
    before = refreshes(ls_files)
    first = LabelStudioClient(Credentials(ls_files.url, pat)).auth_headers()
    second = LabelStudioClient(Credentials(ls_files.url, pat)).auth_headers()
    assert first == second and first["Authorization"].startswith("Bearer ")
    assert jwt_claims(first["Authorization"][7:])["token_type"] == "access"
    assert refreshes(ls_files) == before + 1


def test_access_token_is_renewed_before_it_expires(ls_files, pat):
    ls_files.access_ttl = 31.0                        # valid for 1 s after the 30 s safety margin
    client = LabelStudioClient(Credentials(ls_files.url, pat))
    first = client.auth_headers()
    time.sleep(1.5)
    assert client.auth_headers() != first


def test_images_download_with_a_pat(ls_files, pat, make_settings):
    image = ImageFetcher(make_settings(LABEL_STUDIO_API_KEY=pat)).fetch("/data/upload/1/a6b80a50-disc.png")
    assert image.shape == (240, 320, 3)
    assert ls_files.requests[-1][2].startswith("Bearer ")


def test_a_revoked_access_token_is_replaced_after_a_401(ls_files, pat, make_settings):
    fetcher = ImageFetcher(make_settings(LABEL_STUDIO_API_KEY=pat, IMAGE_CACHE_SIZE="0"))
    fetcher.fetch("/data/upload/1/a6b80a50-disc.png")
    ls_files.access_tokens.clear()                    # the server forgets the access token
    before = refreshes(ls_files)
    assert fetcher.fetch("/data/upload/1/a6b80a50-disc.png").shape == (240, 320, 3)
    assert refreshes(ls_files) == before + 1


def test_unknown_pat_is_a_clear_auth_error(ls_files, jwt_token):
    stranger = jwt_token({"token_type": "refresh", "jti": "not-issued"})
    with pytest.raises(LabelStudioAuthError, match="refused the personal access token .*HTTP 401"):
        LabelStudioClient(Credentials(ls_files.url, stranger)).auth_headers()


def test_unreachable_label_studio_during_the_exchange(pat):
    client = LabelStudioClient(Credentials(f"http://127.0.0.1:{free_port()}", pat))
    with pytest.raises(LabelStudioUnavailable, match="connection refused"):
        client.auth_headers()


def test_api_raises_on_http_errors(ls_files):
    client = LabelStudioClient(Credentials(ls_files.url, ls_files.token))
    with pytest.raises(LabelStudioError, match="HTTP 404"):
        client.api("GET", "/api/projects/")


def test_env_credentials_win_and_setup_fills_the_gaps():
    setup = Credentials("http://ls:8080", "setup-token")
    assert Credentials.resolve(Settings(), setup) == setup
    env = Settings(label_studio_url="http://env:8080/", label_studio_api_key="env-token")
    assert Credentials.resolve(env, setup) == Credentials("http://env:8080/".rstrip("/"), "env-token", trusted=True)
    assert Credentials.resolve(Settings(label_studio_url="http://env:8080"), setup) == \
        Credentials("http://env:8080", "setup-token", trusted=True)


def test_the_env_token_never_goes_to_a_host_learned_from_setup():
    key_only = Settings(label_studio_api_key="env-token")
    assert Credentials.resolve(key_only, Credentials("http://elsewhere:8080", None)) == \
        Credentials("http://elsewhere:8080", None, trusted=False)
    assert Credentials.resolve(key_only) == Credentials()


@pytest.mark.parametrize("text", ["abc", "a.b.c", "", "x.eyJhIjoxfQ.y"])
def test_non_jwts_have_no_claims(text):
    assert jwt_claims(text) is None

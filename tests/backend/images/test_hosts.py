"""ALLOWED_HOSTS: a URL's host matched by name, by name and port, or by the wildcard."""
from __future__ import annotations

from backend.images.hosts import host_allowed


def test_hosts_match_by_name_or_name_and_port() -> None:
    allowed = ["images.example.org", "ls:8080"]
    assert host_allowed("https://images.example.org/a.jpg", allowed)
    assert host_allowed("http://IMAGES.example.org:9000/a.jpg", allowed)  # a bare name allows every port
    assert host_allowed("http://ls:8080/data/upload/1.png", allowed)
    assert not host_allowed("http://ls:8081/data/upload/1.png", allowed)
    assert not host_allowed("http://evil.example.org/a.jpg", allowed)


def test_wildcard_allows_any_host_and_bad_urls_are_refused() -> None:
    assert host_allowed("http://anything:1/x", ["*"])
    assert not host_allowed("http://ls:99999/x", ["ls"])  # port out of range
    assert not host_allowed("/relative/path.png", ["ls"])

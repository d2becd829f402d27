"""The LRU mapping: bounded in items and bytes, least recently used out first."""
from __future__ import annotations

import numpy as np

from backend.common.lru import LRUCache


def test_least_recently_used_goes_first() -> None:
    cache: LRUCache[str] = LRUCache(2, size=len)
    cache.put("a", "1")
    cache.put("b", "22")
    assert cache.get("a") == "1"  # "a" is now the most recent
    cache.put("c", "333")
    assert cache.get("b") is None and cache.get("a") == "1" and cache.get("c") == "333"
    assert len(cache) == 2 and cache.nbytes == 4


def test_byte_bound_evicts_and_refuses_a_value_larger_than_the_bound() -> None:
    cache: LRUCache[np.ndarray] = LRUCache(10, max_bytes=1000)
    cache.put(1, np.zeros(600, np.uint8))
    cache.put(2, np.zeros(600, np.uint8))  # 1200 bytes: the first goes
    assert cache.get(1) is None and cache.get(2) is not None and cache.nbytes == 600
    cache.put(3, np.zeros(1001, np.uint8))
    assert cache.get(3) is None and cache.nbytes == 600


def test_replacing_a_key_counts_its_bytes_once_and_capacity_zero_keeps_nothing() -> None:
    cache: LRUCache[str] = LRUCache(3, size=len)
    cache.put("k", "aaaa")
    cache.put("k", "bb")
    assert len(cache) == 1 and cache.nbytes == 2 and cache.get("k") == "bb"
    off: LRUCache[str] = LRUCache(0, size=len)
    off.put("k", "v")
    assert off.get("k") is None and len(off) == 0

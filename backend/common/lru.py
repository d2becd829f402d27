"""A small thread-safe LRU mapping (decoded images, previous masks), bounded in items and bytes."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


def _nbytes(value: object) -> int:
    return int(getattr(value, "nbytes", 0))


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used mapping.

    Args:
        capacity: most items held (0 = off).
        max_bytes: most bytes held, as ``size(value)`` counts them (``None`` = no byte bound); a
            value larger than this is not kept at all.
        size: bytes of a value (default: its ``nbytes``, as numpy arrays have).
    """

    def __init__(self, capacity: int, max_bytes: int | None = None,
                 size: Callable[[V], int] = _nbytes) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._size = size
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: V) -> None:
        nbytes = self._size(value)
        if self.capacity == 0 or (self.max_bytes is not None and nbytes > self.max_bytes):
            return
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while len(self._items) > self.capacity or (self.max_bytes is not None and self._bytes > self.max_bytes):
                self._bytes -= self._items.popitem(last=False)[1][1]

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

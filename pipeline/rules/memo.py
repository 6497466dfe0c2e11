"""Memoization bounded by bytes, for pure functions of untrusted text.

``functools.lru_cache(maxsize=65536)`` bounds entries, not memory: keyed by URLs of
up to 8 KB, or by labels a record may make as long as it likes, 65,536 entries can
hold hundreds of megabytes that one hostile feed fills on purpose. :class:`Memo`
keeps results least-recently-used within a byte budget (``cachetools.LRUCache``
with a size per entry), counting each entry as a fixed overhead plus the characters
of its arguments, which the results of these functions echo.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Hashable, TypeVar

from cachetools import LRUCache

R = TypeVar("R")

#: What an entry costs besides its text: the key tuple, the result object, the cache's links.
ENTRY_OVERHEAD = 256


def text_size(value: object) -> int:
    """The characters (or bytes) of the text in ``value``: strings, bytes, and tuples or
    frozen records of them, counted; anything else (a settings group shared by every entry)
    is free.

    >>> text_size(("abc", b"de", ("f",), 7))
    6
    """
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, tuple):
        return sum(text_size(item) for item in value)
    slots = getattr(type(value), "__slots__", None)
    if slots and getattr(type(value), "__module__", "").startswith("pipeline.contracts"):
        return sum(text_size(getattr(value, name)) for name in slots)
    return 0


class Memo(Generic[R]):
    """``fn`` memoized within ``max_bytes`` (thread-safe: intake also runs it off the event loop).

    >>> calls = []
    >>> twice = Memo(lambda text: calls.append(text) or text * 2, max_bytes=4096)
    >>> twice("ab"), twice("ab"), len(calls)
    ('abab', 'abab', 1)
    """

    def __init__(self, fn: Callable[..., R], max_bytes: int) -> None:
        self._fn = fn
        self.max_bytes = max_bytes
        self._cache: LRUCache[tuple[Hashable, ...], tuple[int, R]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: entry[0])
        self._lock = threading.Lock()

    def __call__(self, *args: Hashable) -> R:
        with self._lock:
            hit = self._cache.get(args)
        if hit is not None:
            return hit[1]
        value = self._fn(*args)
        cost = ENTRY_OVERHEAD + 2 * text_size(args)
        if cost <= self.max_bytes:
            with self._lock:
                self._cache[args] = (cost, value)
        return value

    @property
    def size(self) -> int:
        """The bytes the entries are counted as (never above ``max_bytes``)."""
        return int(self._cache.currsize)

    def __len__(self) -> int:
        return len(self._cache)

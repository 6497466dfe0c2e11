"""Memoization bounded by bytes, for pure functions of untrusted text.

``functools.lru_cache(maxsize=65536)`` bounds entries, not memory: keyed by URLs of
up to 8 KB, or by labels a record may make as long as it likes, 65,536 entries can
hold hundreds of megabytes that one hostile feed fills on purpose. :class:`Memo`
remembers only calls whose text is at most ``entry_chars`` long (the others are
computed each time), so ``entries`` of them hold at most :attr:`Memo.max_bytes`.
The remembering itself is ``functools.lru_cache``: on intake's path every record
costs one look-up (and the partitioner one), and an LRU kept in Python (a dict in use order, or
``cachetools.LRUCache`` with a size per entry) made each record 40 % slower
(23 us -> 37 us per repeated URL record, measured with timeit).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Generic, Hashable, TypeVar

R = TypeVar("R")

#: What an entry costs besides its text: the key tuple, the result object, the cache's links.
ENTRY_OVERHEAD = 512


class Memo(Generic[R]):
    """``fn`` memoized for calls whose ``size(*args)`` (characters of text) is at most ``entry_chars``.

    >>> calls = []
    >>> twice = Memo(lambda text: calls.append(text) or text * 2, entries=4, entry_chars=8, size=len)
    >>> twice("ab"), twice("ab"), twice("x" * 9), twice("x" * 9), len(calls)
    ('abab', 'abab', 'xxxxxxxxxxxxxxxxxx', 'xxxxxxxxxxxxxxxxxx', 3)
    """

    def __init__(self, fn: Callable[..., R], *, entries: int, entry_chars: int, size: Callable[..., int]) -> None:
        self._fn = fn
        self._cached = lru_cache(maxsize=entries)(fn)
        self._size = size
        self.entry_chars = entry_chars
        #: The most the remembered calls can hold (their text counted twice: the key, and the result).
        self.max_bytes = entries * (ENTRY_OVERHEAD + 2 * entry_chars)

    def __call__(self, *args: Hashable) -> R:
        if self._size(*args) <= self.entry_chars:
            return self._cached(*args)
        return self._fn(*args)

    def __len__(self) -> int:
        return self._cached.cache_info().currsize

"""This process's recent CLIP rankings, kept by query vector and by the snapshot they were read
from: the index version and the fresh segment's fingerprint.

Paging through results asks the same question again for every page, and so does a popular
search; the index query is the part of a search that grows with the gallery (Annoy at a million
images: 3.4-4.4 ms of what a page of results costs, against 1.2 ms at 10,000, over HTTP on 2 AMD
EPYC cores with avx2 avx512f; docs/performance.md, section 24). Within one snapshot the nearest vectors cannot change: a publish or a newly
embedded row gives a new key; what can change is judged after, on every search: which rows are
hidden or deleted, and how many results are relevant (against the gallery's size and its
background sample). A live engine (Milvus, no fresh segment) changes without a new key, so its
answers are never kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from cachetools import LRUCache

HELD = 256  # rankings of up to 320 (id, score) pairs and their 2 KB key: ~40 KB each, ~10 MB in all

Ranking = TypeVar("Ranking")
_held: LRUCache = LRUCache(maxsize=HELD)
_lock = threading.Lock()


def ranking(key: Hashable, compute: Callable[[], Ranking]) -> Ranking:
    """``compute()``'s answer, kept under ``key`` (which must name the snapshot it reads)."""
    with _lock:
        found = _held.get(key)
    if found is None:
        found = compute()  # outside the lock: two threads asking at once both compute
        with _lock:
            _held[key] = found
    return found


def forget() -> None:
    """Drop what is held (tests)."""
    with _lock:
        _held.clear()

"""Where a request's time went: named durations, collected per request for the ``Server-Timing``
header (browsers' developer tools draw it; ``benchmarks.scale`` subtracts the text encoder's
own time from a search with it).

Framework-free: the web tier opens a collection around each request
(``gallery.http.server_timing``); work worth naming (the text encoder, the index query) is
wrapped in :func:`timed`, which costs two clock reads when a collection is open and nothing
else when none is (tasks, commands)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_collected: ContextVar[dict[str, float] | None] = ContextVar("timings", default=None)


@contextmanager
def collecting() -> Iterator[dict[str, float]]:
    """Collect the durations recorded inside this block (this thread's; a context variable, so
    gunicorn's threads never mix their requests): ``{name: seconds}``, summed per name."""
    timings: dict[str, float] = {}
    token = _collected.set(timings)
    try:
        yield timings
    finally:
        _collected.reset(token)


@contextmanager
def timed(name: str) -> Iterator[None]:
    timings = _collected.get()
    if timings is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

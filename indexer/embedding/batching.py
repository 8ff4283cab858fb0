"""Concurrent text queries of one process share forward passes.

A query that finds the model idle runs at once (no added latency when alone); queries that
arrive while a pass is running wait for it, then go together in the next pass, after waiting
at most ``wait_s`` for more company.

Measured with ``benchmarks.text_batching`` on the CLIP text tower, it lost to one pass per
query on every runtime (docs/performance.md, "Runtimes per CPU"): a query is already 77 tokens,
so a batch of four costs nearly four passes, and the queries wait for each other. The gallery
does not use it; the benchmark keeps the comparison repeatable for other CPUs and models.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np


class _Query:
    __slots__ = ("text", "vector", "error", "done")

    def __init__(self, text: str):
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class TextBatcher:
    def __init__(self, encode_texts: Callable[[Sequence[str]], np.ndarray], *, max_batch: int = 16, wait_s: float = 0.0):
        self._encode = encode_texts
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._waiting: list[_Query] = []
        self._busy = False
        self._changed = threading.Condition()

    def encode(self, text: str) -> np.ndarray:
        """The vector of one text, computed in a pass shared with concurrent callers."""
        query = _Query(text)
        with self._changed:
            self._waiting.append(query)
        while True:
            with self._changed:
                while not query.done and self._busy:
                    self._changed.wait()
                if query.done:
                    return self._result(query)
                self._busy = True  # this caller runs the next pass, for whoever waits
                if self._wait_s and len(self._waiting) < self._max_batch:
                    self._changed.wait(self._wait_s)
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            try:
                vectors = self._encode([q.text for q in batch])
                for q, vector in zip(batch, vectors):
                    q.vector = vector
            except BaseException as exc:  # every caller of the pass gets the error
                for q in batch:
                    q.error = exc
            with self._changed:
                for q in batch:
                    q.done = True
                self._busy = False
                self._changed.notify_all()

    @staticmethod
    def _result(query: _Query) -> np.ndarray:
        if query.error is not None:
            raise query.error
        return query.vector

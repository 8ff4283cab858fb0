"""Batch embedding with decoding overlapped with the model (clip-retrieval's reader/mapper split).

While the model encodes batch *n*, a thread pool reads, decodes and preprocesses batch *n+1*:
Pillow, numpy, torch and ONNX Runtime all release the GIL, so the two kinds of work share the cores.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Iterable, Iterator, TypeVar

import numpy as np

from indexer.embedding import Embedder
from indexer.images import open_rgb

K = TypeVar("K", bound=Hashable)
ReadBytes = Callable[[], bytes]


@dataclass
class EmbeddedBatch(Generic[K]):
    keys: list[K]  # in the order of `vectors`' rows
    vectors: np.ndarray
    failures: list[tuple[K, Exception]] = field(default_factory=list)  # (key, what went wrong)


def embed_sources(
    sources: Iterable[tuple[K, ReadBytes]],
    embedder: Embedder,
    *,
    batch_size: int = 16,
    workers: int = 2,
) -> Iterator[EmbeddedBatch[K]]:
    """Embed ``(key, read_bytes)`` pairs in batches. A source that cannot be read or decoded
    becomes a failure with its exception; it never stops the others."""

    def prepare(read: ReadBytes):
        # Decode at a reduced scale where the format allows: the model sees ~224 px anyway.
        image = open_rgb(read(), min_size=embedder.image_size)
        return embedder.preprocess(image)

    def finish(batch: list[tuple[K, Future]]) -> EmbeddedBatch[K]:
        keys, tensors, failures = [], [], []
        for key, future in batch:
            try:
                tensors.append(future.result())
                keys.append(key)
            except Exception as exc:  # unreadable, truncated, vanished from storage...
                failures.append((key, exc))
        if tensors:
            vectors = embedder.encode_image_batch(np.stack(tensors))
        else:
            vectors = np.zeros((0, embedder.dim), dtype=np.float32)
        return EmbeddedBatch(keys=keys, vectors=vectors, failures=failures)

    source_iter = iter(sources)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        waiting: list[tuple[K, Future]] | None = None
        while chunk := list(itertools.islice(source_iter, batch_size)):
            submitted = [(key, pool.submit(prepare, read)) for key, read in chunk]
            if waiting is not None:
                yield finish(waiting)
            waiting = submitted
        if waiting is not None:
            yield finish(waiting)

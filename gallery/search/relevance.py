"""Which of a search's CLIP results are relevant: ``indexer.relevance``'s rule (no similarity
constant; each query judged against its own scores over the collection), fed with the
collection's background here.

The background is a uniform sample of the stored vectors of the query's model
(BACKGROUND_SIZE of them, read by ``gallery.catalogue.sampling``'s random ids through the primary key, so
it costs the same at a thousand images and at a million). A process keeps it for
BACKGROUND_SECONDS per model and index version; a query then costs one matrix product of that
sample with its vector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from gallery.catalogue.sampling import id_sample, pk_among
from gallery.models import Image, vectors_of
from indexer.relevance import MIN_BACKGROUND, relevant_count

BACKGROUND_SIZE = 1000
BACKGROUND_SECONDS = 600

_lock = threading.Lock()
_backgrounds: dict[tuple[str, str | None], tuple[float, np.ndarray]] = {}


def relevant_prefix(
    scores: list[float], vector: np.ndarray, *, model_id: str, version: str | None, collection_size: Callable[[], int]
) -> int | None:
    """How many of ``scores`` (a query's CLIP cosines, best first) are relevant, or None when
    the collection is too small to judge (fewer than indexer.relevance.MIN_BACKGROUND vectors).
    ``collection_size()`` is asked only when the rule can judge."""
    sample = background(model_id, version)
    if len(sample) < MIN_BACKGROUND:
        return None
    return relevant_count(scores, sample @ vector, collection_size=max(collection_size(), len(sample)))


def background(model_id: str, version: str | None) -> np.ndarray:
    """A uniform sample of the stored vectors of ``model_id``, as a matrix (rows: vectors)."""
    key, now = (model_id, version), time.monotonic()
    with _lock:
        held = _backgrounds.get(key)
        if held is not None and now - held[0] < BACKGROUND_SECONDS:
            return held[1]
    sample = _sample(model_id)
    with _lock:
        for old in [k for k in _backgrounds if k[0] == model_id]:
            del _backgrounds[old]  # one version per model: the one being served
        _backgrounds[key] = (now, sample)
    return sample


def forget() -> None:
    """Drop the samples held (tests; a new sample comes with the next query)."""
    with _lock:
        _backgrounds.clear()


def _sample(model_id: str) -> np.ndarray:
    ids = id_sample().ids  # uniform over the gallery; some are deleted, failed or of another model
    rows = (
        Image.objects.embedded(model_id).filter(pk_among(ids))
        .order_by("pk")  # the same sample on every database
        .values_list("embedding", flat=True)[:BACKGROUND_SIZE]
    )
    return vectors_of(rows)

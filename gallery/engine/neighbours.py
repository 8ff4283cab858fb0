"""The nearest stored vectors of vectors at hand (not of a query people typed): what the
near-duplicate check asks the search engine for new images.

Asks what search asks (``gallery.search``): the current index version through the engine
adapter (``gallery.engine.backend``), and, on a snapshot engine, the exact fresh segment
(``gallery.engine.fresh_segment``) of vectors embedded since that version was built. So the cost per
vector is one index query plus a product with at most FRESH_SEGMENT_MAX vectors, whatever the
gallery's size. Hidden rows may come back on Annoy (it cannot filter): callers read the rows
they get and filter there.
"""

from __future__ import annotations

import logging

import numpy as np

from gallery.engine.backend import fresh_segment_of, index_errors, search_view
from gallery.errors import NotReady

logger = logging.getLogger(__name__)


def nearest_stored(vectors: np.ndarray, *, model_id: str, k: int) -> list[list[tuple[int, float]]]:
    """For each row of ``vectors`` (of ``model_id``), up to ``k`` ``(image id, cosine)`` of the
    nearest stored vectors of that model, best first. An index built with another model is not
    asked (its vectors live in another space; while a new model's index is missing, the rows
    re-embedded with it are all in the fresh segment)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    found: list[dict[int, float]] = [{} for _ in range(len(vectors))]
    try:
        index, segment, _ = search_view(model_id)
    except NotReady as exc:  # the current version is in the engine configured before: the next publish replaces it
        logger.warning("near neighbours from the fresh segment only: %s", exc)
        index, segment = None, fresh_segment_of(model_id)
    if index is not None and index.info.model == model_id:
        with index_errors():
            for n, vector in enumerate(vectors):
                found[n].update(index.query(vector, k))
    if segment is not None:
        if len(segment) and len(vectors):
            scores = vectors @ segment.vectors.T  # one product for every new vector
            top = min(k, scores.shape[1])
            best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
            for n, columns in enumerate(best):
                for column in columns:
                    pk, score = int(segment.ids[column]), float(scores[n, column])
                    if score > found[n].get(pk, -np.inf):
                        found[n][pk] = score
    return [sorted(hits.items(), key=lambda pair: (-pair[1], pair[0]))[:k] for hits in found]

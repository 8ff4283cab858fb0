"""The nearest images *within* a filter (dates, camera, tags...): the filter applies inside the
search, so one that keeps 0.1% of the gallery still gets that 0.1%'s best matches, not the few
of them that happen to be among everyone's first 320.

Which way is chosen by how much of the gallery the filter keeps, estimated on a uniform sample
of primary keys (``gallery.catalogue.sampling``; one indexed query per search):

- **Exact**, when at most EXACT_MAX images pass: their stored vectors are read from the database
  (by the filter's own query, at most EXACT_MAX + 1 rows) and compared with the query's: every
  one of them is considered.
- **The engine, among the ids that pass**, where it can filter inside its search (Milvus: an
  ``id in [...]`` filter expression) and the filter is selective: at most ENGINE_FILTER_SHARE
  of the gallery and ENGINE_FILTER_MAX images. The ids are read from the database (the
  attributes stay there, the one record curators change) and the engine returns ``limit`` of
  them. Measured on Milvus 2.3.5 (``benchmarks/milvus_filters.py``, docs/performance.md §20): a
  filter that keeps 1% is answered exactly and fast (the server compares the few rows that
  pass); one that keeps 10% loses recall inside the graph (recall@16 0.85 mean, 0.13 at worst,
  for field and id expressions alike), so broader filters take the next way.
- **The index, asked for more**, otherwise: enough candidates that ``limit`` of them pass with
  room to spare (:func:`candidates_needed`: about ``limit / share``; at most MAX_CANDIDATES,
  Milvus's own cap on one query), and the filter checked for those candidates in the database
  by primary key. The candidates are the index's nearest, so the ones that pass
  are the filtered set's nearest as far as the index's recall goes.

Each way costs the same at a thousand images and at a million: the exact way reads at most
EXACT_MAX rows, the engine's at most ENGINE_FILTER_MAX ids, the last asks the index for a number of candidates set by the share, not the
gallery's size. ``benchmarks/filtered_search.py`` measures recall@16 against an exact filtered
search at each share.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from django.db.models import QuerySet

from gallery.catalogue.sampling import id_sample, pk_among
from gallery.models import Image, vectors_of

logger = logging.getLogger(__name__)

EXACT_MAX = 5000  # vectors read and compared exactly (10 MB of float32 at 512 dimensions)
ENGINE_FILTER_MAX = 20000  # ids in one filter expression (Milvus parsed 10,000 in ~40 ms)
ENGINE_FILTER_SHARE = 0.02  # past this share, Milvus's filtered graph search loses recall
MAX_CANDIDATES = 16384  # Milvus answers at most this many per query
SPARE_SD = 3.0  # standard deviations to spare in the share's estimate and in how many pass


def nearest_within(
    filtered: QuerySet[Image],
    vector: np.ndarray,
    *,
    model_id: str,
    limit: int,
    nearest: Callable[[int], list[tuple[int, float]]],
    collection_size: Callable[[], int],
    nearest_among: Callable[[list[int], int], list[tuple[int, float]]] | None = None,
) -> tuple[list[tuple[int, float]], float]:
    """``(id, cosine)`` of the ``limit`` nearest images among ``filtered``, best first, and the
    share of the gallery the filter keeps (estimated). ``nearest(k)`` asks the index (and the
    fresh segment) for its ``k`` nearest; ``nearest_among(ids, k)``, where the engine can, for
    its ``k`` nearest among ``ids``."""
    share = estimated_share(filtered)
    size = max(collection_size(), 1)
    if share * size <= EXACT_MAX:
        rows = list(filtered.embedded(model_id).values_list("pk", "embedding")[: EXACT_MAX + 1])
        if len(rows) <= EXACT_MAX:
            return _exact(rows, vector, limit), len(rows) / size
        share = max(share, EXACT_MAX / size)  # the estimate was low: more pass than it said
    if nearest_among is not None and share <= ENGINE_FILTER_SHARE and share * size <= ENGINE_FILTER_MAX:
        ids = list(filtered.filter(embedding_model=model_id).order_by().values_list("pk", flat=True)[: ENGINE_FILTER_MAX + 1])
        if len(ids) <= ENGINE_FILTER_MAX and len(ids) / size <= ENGINE_FILTER_SHARE:  # the estimate may have been low
            found = nearest_among(ids, limit)
            if len(found) >= min(limit, len(ids)):
                return found, len(ids) / size
            # A graph search under a tight filter may stop short (Milvus Lite does; a server
            # compares the few rows that pass), or the engine lacks some rows yet: ask as Annoy is asked.
            logger.info("the engine found %d of %d filtered images: asking it for candidates", len(found), len(ids))
        share = max(share, len(ids) / size)
    candidates = nearest(candidates_needed(limit, share, sampled=id_sample().existing))
    passing = set(filtered.filter(pk_among([pk for pk, _ in candidates])).values_list("pk", flat=True))
    return [(pk, score) for pk, score in candidates if pk in passing][:limit], share


def candidates_needed(limit: int, share: float, *, sampled: int) -> int:
    """How many of the index's nearest to ask for so that ``limit`` of them pass a filter that
    keeps ``share`` of the gallery (estimated on ``sampled`` ids), with three standard deviations
    to spare twice: the share is taken at the low end of its estimate, and the number passing
    among k candidates (binomial) at the low end of its spread."""
    low = share - SPARE_SD * math.sqrt(max(share * (1 - share), 0.0) / max(sampled, 1))
    p = min(1.0, max(low, share / 2, 1e-6))
    # Smallest k with k p - SPARE_SD sqrt(k p (1 - p)) >= limit: a quadratic in sqrt(k).
    root = (SPARE_SD * math.sqrt(p * (1 - p)) + math.sqrt(SPARE_SD**2 * p * (1 - p) + 4 * p * limit)) / (2 * p)
    return min(MAX_CANDIDATES, max(limit, math.ceil(root * root)))


def estimated_share(filtered: QuerySet[Image]) -> float:
    """The share of the gallery's images that pass ``filtered``, from a uniform sample of ids."""
    sample = id_sample()
    if not sample.existing:
        return 0.0
    return filtered.filter(pk_among(sample.ids)).count() / sample.existing


def _exact(rows: list[tuple[int, bytes]], vector: np.ndarray, limit: int) -> list[tuple[int, float]]:
    if not rows:
        return []
    ids = np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows))
    vectors = vectors_of(blob for _, blob in rows)
    scores = vectors @ np.asarray(vector, dtype=np.float32)
    best = np.argsort(-scores, kind="stable")[:limit]
    return [(int(ids[i]), float(scores[i])) for i in best]

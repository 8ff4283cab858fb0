"""The fresh segment: vectors embedded since the current index version was built.

Only a snapshot engine (Annoy) needs it: Milvus takes each vector into the
current version as it is embedded (``gallery.indexing``), its rows are indexed at once, and
search never reads this segment there (``gallery.engine.backend``).

An embed run stores vectors and leaves rows pending; a compaction (``indexing.index_publish``)
later rebuilds the Annoy index over everything and marks the rows it holds indexed. Between the
two, search answers from both: the built index, and an exact search over the fresh rows, which
are the pending rows holding a vector of the query's model.

The rows live in the database, so every web process sees the same segment. Each process keeps
the segment as one float32 matrix, like ``gallery.engine.index_cache`` keeps the index: every search
reads a fingerprint with one aggregate query (how many fresh rows, the newest ``embedded_at``,
the highest id, and the current version, which search loads from it: the index and the segment
come from one statement, so a version made current in between cannot leave rows out of both)
and reloads the matrix only when that changed, which is once per embed run or publish, not once
per query.

Size: a compaction is due once the segment holds more than ``FRESH_SEGMENT_MAX`` vectors
(20,000 by default). At 512 dimensions that is 41 MB of float32 per web process, and the exact
search costs about 1 ms at 10,000 vectors and 3 ms at 20,000 (numpy matrix-vector product plus
a top-k partition, one thread, AMD EPYC with AVX-512; see docs/performance.md, "Fresh segment"),
next to ~40 ms for encoding a text with ViT-B-32 on the same 2 cores: the segment stays a small
share of a search, and a reload after an embed run reads at most 41 MB from the database. A
larger segment still works; it is just slower until the compaction catches up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import F

from gallery.models import Image, IndexVersion, VisibilityGeneration, vectors_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fingerprint:
    """Changes whenever the set of fresh rows or their vectors may have changed: a row embedded
    (newer ``embedded_at``, higher id or count), a row deleted or queued again (count), or a
    version made current (rows became indexed)."""

    model: str
    count: int
    last_embedded: object  # the database's value (compared, never shown), None when the segment is empty
    top_id: int | None
    version: str | None  # the current index version when the rows were counted
    # That version's checksum and engine, so that search loads it without asking again.
    checksum: str | None = None
    backend: str | None = None
    # The visibility generation as it was then (gallery.catalogue.visible): search's hidden and
    # deleted ids, checked without a query of their own. Not part of what the segment is.
    left_out: int | None = field(default=None, compare=False)

    def current_version(self) -> IndexVersion | None:
        """The current version's row as read with the rows (its version, checksum and engine)."""
        return IndexVersion(version=self.version, checksum=self.checksum, backend=self.backend) if self.version else None


@dataclass(frozen=True)
class FreshSegment:
    fingerprint: Fingerprint
    ids: np.ndarray  # int64, one per row of ``vectors``
    vectors: np.ndarray  # float32, (n, dim), L2-normalised

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def version(self) -> str | None:
        return self.fingerprint.version

    def query(self, vector: np.ndarray, k: int, *, at_least: float = -np.inf) -> list[tuple[int, float]]:
        """The ``k`` best (image id, cosine similarity) pairs, exactly, best first; only those
        scoring ``at_least`` (what the index's k-th hit scored: the rest cannot make the top k)."""
        if not len(self.ids) or k <= 0:
            return []
        scores = self.vectors @ np.asarray(vector, dtype=np.float32).ravel()
        top = np.flatnonzero(scores >= at_least)
        if len(top) > k:
            top = top[np.argpartition(-scores[top], k - 1)[:k]]
        top = top[np.argsort(-scores[top], kind="stable")]
        return list(zip(self.ids[top].tolist(), scores[top].tolist()))


_lock = threading.Lock()
_loaded: FreshSegment | None = None


def fresh_rows(model_id: str):
    """Rows with a vector of ``model_id`` that no current index holds yet (rows become indexed
    exactly when a version containing them is made current)."""
    return Image.objects.fresh(model_id)


def fingerprint(model_id: str) -> Fingerprint:
    """One aggregate query over the fresh rows' own index, the current version beside it."""
    sql, params = _fingerprint_sql(model_id, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        version, checksum, backend, count, last, top, left_out = cursor.fetchone()
    return Fingerprint(model_id, count, last, top, version, checksum, backend, left_out)


@lru_cache(maxsize=32)
def _fingerprint_sql(model_id: str, vendor: str) -> tuple[str, tuple]:
    """The fingerprint's SQL, compiled once per process and model from the QuerySets that say
    which rows are fresh and which version is current. Django compiles a QuerySet each time it
    runs: as an ORM aggregate this query cost ~1 ms of every search after the text encoding, four
    times its own run (2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16, a million images;
    docs/performance.md, section 23). The
    version rides along through a join, so that an empty segment still reads it, and the
    visibility generation as a scalar subquery."""
    rows = fresh_rows(model_id).order_by().values(fresh_id=F("pk"), fresh_at=F("embedded_at"))
    rows_sql, rows_params = rows.query.sql_with_params()
    current = IndexVersion.objects.filter(is_current=True).order_by().values("version", "checksum", "backend")[:1]
    current_sql, current_params = current.query.sql_with_params()
    generation_sql = f"SELECT generation FROM {VisibilityGeneration._meta.db_table} WHERE id = 1"
    sql = (
        f"SELECT v.version, v.checksum, v.backend, f.n, f.last, f.top, ({generation_sql}) FROM "
        f"(SELECT COUNT(*) AS n, MAX(r.fresh_at) AS last, MAX(r.fresh_id) AS top FROM ({rows_sql}) r) f "
        f"LEFT JOIN ({current_sql}) v ON TRUE"
    )
    return sql, (*rows_params, *current_params)


def current_segment(model_id: str) -> FreshSegment:
    """The fresh segment for ``model_id``, reloaded from the database only when it changed."""
    return segment_of(fingerprint(model_id))


def segment_of(seen: Fingerprint) -> FreshSegment:
    """The fresh segment ``seen`` describes: the one held, or read again when it changed."""
    global _loaded
    loaded = _loaded
    if loaded is not None and loaded.fingerprint == seen:
        return loaded
    with _lock:
        if _loaded is None or _loaded.fingerprint != seen:
            _loaded = _load(seen)
        return _loaded


def clear_fresh_cache() -> None:
    global _loaded
    with _lock:
        _loaded = None


def _load(seen: Fingerprint) -> FreshSegment:
    rows = list(fresh_rows(seen.model).order_by("pk").values_list("pk", "embedding"))
    ids = np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows))
    vectors = vectors_of(blob for _, blob in rows)
    if len(rows) > settings.FRESH_SEGMENT_MAX:
        logger.warning(
            "fresh segment holds %d vectors (FRESH_SEGMENT_MAX %d): search is slower until the next compaction",
            len(rows), settings.FRESH_SEGMENT_MAX,
        )
    else:
        logger.info("loaded fresh segment: %d vectors of %s after index %s", len(rows), seen.model, seen.version)
    # The rows read may differ slightly from the fingerprint (a run committed in between);
    # the next search sees a new fingerprint and reloads.
    return FreshSegment(fingerprint=seen, ids=ids, vectors=vectors)

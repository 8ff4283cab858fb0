"""The index backend the gallery uses, chosen by ``INDEX_BACKEND`` and built here, once.

- ``annoy``, a snapshot engine: a version is built on this host's disk (an ``AnnoyBackend``
  over the ``builds`` folder), copied to storage, and made current by the database's
  :class:`~gallery.models.IndexVersion` row; web hosts read it through ``gallery.index_cache``
  (a local copy, memory-mapped). Vectors embedded later wait in the fresh segment, and search
  drops hidden and deleted rows itself.
- ``milvus``, a live engine: a version is a collection on the Milvus server (or Milvus Lite on
  a ``*.db`` path); at activation the database row and the server's alias move together.
  Embedded vectors are upserted at once, curation changes reach the collection once their
  database transaction commits, and hidden rows are filtered inside the search, so there is
  no fresh segment. The database stays the truth: search drops hidden and deleted rows it
  reads there too, and the hourly run makes the engine's hidden rows match the database's
  (``gallery.indexing.index_reconcile_visibility``), after a write the engine missed.

Readers follow the database's current version on both, so the rows' indexed state, the
admin's version list and what search answers from never disagree. Every engine failure reaches
people as :class:`gallery.errors.Unavailable` (HTTP 503), never as the engine's own exception.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from django.conf import settings
from django.db import transaction

from gallery.artifacts import local_folder
from gallery.errors import SEARCH_UNAVAILABLE, NotReady, Unavailable
from gallery.index_cache import current_index, other_backend
from gallery.models import IndexVersion
from indexer.backends import IndexBackend, IndexReader, IndexUnavailable, get_backend

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_milvus: tuple[tuple, IndexBackend] | None = None  # (the settings it was built with, the backend)
_annoy: tuple[tuple, IndexBackend] | None = None
_reader: IndexReader | None = None  # a live engine's reader of the current version


def index_backend() -> IndexBackend:
    """The configured backend, kept per process and built again when its settings change:
    Milvus' holds the connection; Annoy's is a folder on this host, but every search asks
    :func:`is_live` twice, so it is not named (and its folder made) again on each call."""
    global _milvus, _annoy
    if settings.INDEX_BACKEND == "annoy":
        key = (str(settings.INDEX_CACHE_DIR), settings.INDEX_TREES, settings.INDEX_SEARCH_K)
        annoy = _annoy
        if annoy is None or annoy[0] != key:
            annoy = _annoy = (
                key,
                get_backend("annoy", root=local_folder("builds"), n_trees=settings.INDEX_TREES, search_k=settings.INDEX_SEARCH_K),
            )
        return annoy[1]
    options = {
        "uri": settings.MILVUS_URI,
        "token": settings.MILVUS_TOKEN,
        "prefix": settings.MILVUS_COLLECTION_PREFIX,
        "timeout": settings.MILVUS_TIMEOUT,
        "consistency_level": settings.MILVUS_CONSISTENCY_LEVEL,
    }
    key = tuple(options.values())
    with _lock:
        if _milvus is None or _milvus[0] != key:
            _close()
            _milvus = (key, get_backend("milvus", **options))
        return _milvus[1]


def is_live() -> bool:
    """Whether the engine takes vectors and curation changes at once (Milvus), rather than at
    the next publish with a fresh segment meanwhile (Annoy)."""
    return not index_backend().needs_fresh_segment


def clear_backend_cache() -> None:
    """Forget the backend and its reader (closing Milvus' connection), as after a settings change."""
    with _lock:
        _close()


def _close() -> None:
    global _milvus, _annoy, _reader
    if _milvus is not None:
        _milvus[1].close()
    _milvus = _annoy = _reader = None


@contextmanager
def index_errors() -> Iterator[None]:
    """The engine's failures as the gallery's 503: logged with their cause, said plainly."""
    try:
        yield
    except IndexUnavailable as exc:
        logger.error("the search index is unavailable: %s", exc)
        raise Unavailable(SEARCH_UNAVAILABLE) from exc


def current_reader() -> IndexReader | None:
    """The current published version, ready to query, or ``None`` before the first publish."""
    global _reader
    if not is_live():
        from indexer.backends.annoy_backend import AnnoyReader

        index = current_index()  # loaded once per process, swapped when another is current
        return AnnoyReader(index, search_k=settings.INDEX_SEARCH_K) if index is not None else None
    current = IndexVersion.objects.filter(is_current=True).values_list("version", "backend").first()
    if current is None:
        return None
    version, built_in = current
    if built_in != settings.INDEX_BACKEND:
        raise NotReady(other_backend(built_in))
    reader = _reader
    if reader is not None and reader.version == version:
        return reader
    with index_errors():
        reader = index_backend().open(version)
    _reader = reader
    return reader


def live_upsert(ids: Sequence[int], vectors: np.ndarray, *, model_id: str, hidden: Sequence[int] = ()) -> bool:
    """Write freshly embedded vectors into a live engine's current version. Whether they are
    searchable there now: ``False`` on a snapshot engine, before the first publish, or when the
    current version holds another model's vectors (the next publish takes them in)."""
    if not is_live() or not len(ids):
        return False
    visible = ~np.isin(np.asarray(ids, dtype=np.int64), np.asarray(list(hidden), dtype=np.int64))
    with index_errors():
        written = index_backend().upsert(np.asarray(ids), vectors, model_id=model_id, visible=visible)
    return written == len(ids)


def live_set_visible(ids: Sequence[int], visible: bool) -> None:
    """Show or hide rows in a live engine's search, once the caller's transaction commits (at
    once outside one): a rolled-back hide must not stay hidden in the engine. Best effort: the
    database is the truth and search also drops hidden rows it reads there, so an outage costs
    only a short page until the hourly run reconciles the two."""
    if ids and is_live():
        ids = list(ids)
        _after_commit(f"{'show' if visible else 'hide'} images {ids[:10]}", index_backend().set_visible, ids, visible)


def live_delete(ids: Sequence[int]) -> None:
    """Remove deleted rows from a live engine after the commit (best effort, as
    :func:`live_set_visible`; a row the engine keeps is dropped by search, which finds no
    database row for it)."""
    if ids and is_live():
        ids = list(ids)
        _after_commit(f"delete images {ids[:10]}", index_backend().delete, ids)


def _after_commit(doing: str, call, *args) -> None:
    def write() -> None:
        try:
            call(*args)
        except IndexUnavailable as exc:
            logger.warning("the index could not %s now (search filters them by the database meanwhile): %s", doing, exc)

    transaction.on_commit(write)

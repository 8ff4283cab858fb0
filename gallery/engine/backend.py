"""The index engine the gallery uses, chosen by ``INDEX_BACKEND`` and built here, once: the one
place where Annoy and Milvus differ. The rest of the gallery asks this module for a reader, for
writes and for builds, never which engine runs.

- ``annoy``, a snapshot engine: a version is built on this host's disk (an ``AnnoyBackend``
  over the ``builds`` folder), copied to storage, and made current by the database's
  :class:`~gallery.models.IndexVersion` row; web hosts read it through ``gallery.engine.index_cache``
  (a local copy, memory-mapped). Vectors embedded later wait in the fresh segment, and search
  drops hidden and deleted rows itself.
- ``milvus``, a live engine: a version is a collection on the Milvus server (or Milvus Lite on
  a ``*.db`` path); at activation the database row and the server's alias move together.
  Embedded vectors are upserted at once, curation changes reach the collection once their
  database transaction commits, and hidden rows are filtered inside the search, so there is
  no fresh segment. The database stays the truth: search drops hidden and deleted rows it
  reads there too, and the scheduled run makes the engine's hidden rows match the database's
  (:func:`reconcile_visibility`), after a write the engine missed.

Readers follow the database's current version on both, so the rows' indexed state, the
admin's version list and what search answers from never disagree. Every engine failure reaches
people as :class:`gallery.errors.Unavailable` (HTTP 503), never as the engine's own exception.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.dispatch import receiver

from gallery.catalogue.signals import images_deleted, images_visibility_changing
from gallery.engine import fresh_segment
from gallery.engine.artifacts import local_folder, store_artifact
from gallery.engine.fresh_segment import fresh_rows
from gallery.engine.index_cache import current_index, local_index_dir
from gallery.errors import SEARCH_UNAVAILABLE, NotReady, StorageUnavailable, Unavailable
from gallery.models import Image, IndexVersion, vectors_of
from indexer import index as annoy_index
from indexer.backends import IndexBackend, IndexReader, IndexUnavailable, VersionInfo, get_backend

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
        key = (str(settings.INDEX_CACHE_DIR), settings.INDEX_TREES, settings.INDEX_SEARCH_K, settings.INDEX_RECALL_TARGET, settings.INDEX_REDUCED_DIMS)
        annoy = _annoy
        if annoy is None or annoy[0] != key:
            annoy = _annoy = (
                key,
                get_backend(
                    "annoy", root=local_folder("builds"), n_trees=settings.INDEX_TREES, search_k=settings.INDEX_SEARCH_K,
                    recall_target=settings.INDEX_RECALL_TARGET, reduced_dims=settings.INDEX_REDUCED_DIMS,
                ),
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


def serving_version() -> IndexVersion | None:
    """The current version if the configured engine holds it: after ``INDEX_BACKEND`` changed,
    a version of the other engine serves nothing, and the next publish builds one afresh."""
    current = IndexVersion.objects.current()
    return current if current is not None and current.backend == settings.INDEX_BACKEND else None


def engine_versions():
    """The versions built in the configured engine (newest first): those a rollback may serve."""
    return IndexVersion.objects.filter(backend=settings.INDEX_BACKEND)


def other_engine(version: IndexVersion) -> bool:
    """Whether ``version`` was built in the engine ``INDEX_BACKEND`` left (it cannot answer)."""
    return version.backend != settings.INDEX_BACKEND


def current_reader() -> IndexReader | None:
    """The current published version, ready to query, or ``None`` before the first publish.
    :class:`NotReady` while the current version is in the engine ``INDEX_BACKEND`` left."""
    return _reader_of(IndexVersion.objects.current("version", "checksum", "backend"))


class SearchView(NamedTuple):
    index: IndexReader | None
    segment: fresh_segment.FreshSegment | None  # None on a live engine, which holds new vectors itself
    # The visibility generation read with them (gallery.catalogue.visible); None on a live engine.
    left_out: int | None = None


def search_view(model_id: str) -> SearchView:
    """What a search in ``model_id``'s space reads: the current version's reader (as
    :func:`current_reader`) and, on a snapshot engine, the fresh segment of that model and the
    visibility generation. They come from one query, so they agree: a version made current in
    between cannot leave the rows it took from the segment out of both (unless that version
    cannot be loaded here: ``index_cache`` then serves the one it holds, and says so in the log)."""
    if is_live():
        return SearchView(current_reader(), None)
    seen = fresh_segment.fingerprint(model_id)
    return SearchView(_reader_of(seen.current_version()), fresh_segment.segment_of(seen), seen.left_out)


def fresh_segment_of(model_id: str) -> fresh_segment.FreshSegment | None:
    """The fresh segment of ``model_id`` alone (``None`` on a live engine)."""
    return None if is_live() else fresh_segment.current_segment(model_id)


def _reader_of(current: IndexVersion | None) -> IndexReader | None:
    global _reader
    if current is None:
        return None
    if other_engine(current):
        raise NotReady(
            f"Search is not ready yet: the current index is in {current.backend}, and the gallery now "
            f"uses {settings.INDEX_BACKEND}. The next index run builds one there."
        )
    if not is_live():
        from indexer.backends.annoy_backend import AnnoyReader

        index = current_index(current)  # loaded once per process, swapped when another is current
        return AnnoyReader(index, search_k=settings.INDEX_SEARCH_K) if index is not None else None
    reader = _reader
    if reader is not None and reader.version == current.version:
        return reader
    with index_errors():
        reader = index_backend().open(current.version)
    _reader = reader
    return reader


def stale_by_count(version: IndexVersion, indexable) -> bool:
    """Whether ``version`` must be rebuilt because the rows it should hold (the QuerySet
    ``indexable``) changed in number (deletions): a snapshot engine keeps deleted rows until the
    next build; a live engine deleted them at once (and is spared the count)."""
    return not is_live() and indexable.count() != version.item_count


def drop_version(version: IndexVersion) -> None:
    """Remove what a pruned version holds: an Annoy version's files in storage and this host's
    copy; a collection in the configured live engine. One in a live engine that is no longer
    configured is left there (logged: drop it there)."""
    if version.backend == "annoy":
        for name in annoy_index.FILES:
            default_storage.delete(f"{version.storage_prefix}/{name}")
        shutil.rmtree(local_index_dir(version.version), ignore_errors=True)
    elif other_engine(version):
        logger.warning("index %s is in %s, which is no longer configured: drop it there", version.version, version.backend)
    else:
        with index_errors():
            index_backend().drop(version.version)


def sweep_leftovers() -> list[str]:
    """Drop what the configured engine holds that the database does not know: builds whose
    process died before making them current (an Annoy build on this host's disk, a Milvus
    collection). Only builds older than the publish lease: a publish in flight holds it for at
    most that long, so a younger build may still be about to become current."""
    known = set(engine_versions().values_list("version", flat=True))
    with index_errors():
        swept = index_backend().sweep(known=known, older_than=settings.INDEX_PUBLISH_LEASE_SECONDS)
    if swept:
        logger.warning("dropped builds that were never made current: %s", ", ".join(swept))
    return swept


def activate(version: str) -> None:
    """Point a live engine's alias at ``version``, inside the caller's transaction (a failure
    rolls it back: the old version stays current everywhere). A snapshot engine has nothing to
    move: the database's row is its only pointer, and each host follows it."""
    if is_live():
        with index_errors():
            index_backend().activate(version)


@dataclass
class IndexBuild:
    """A complete version that is not current: an Annoy version on this host's disk, not yet
    in storage, or a Milvus collection that no alias names."""

    info: VersionInfo
    ids: np.ndarray  # the rows it was built from
    snapshot_at: datetime
    backend: IndexBackend

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def folder(self) -> Path:
        """An Annoy build's files on this host."""
        return self.backend.directory(self.version)

    def reader(self) -> IndexReader:
        with index_errors():
            return self.backend.open(self.version)

    def discard(self) -> None:
        try:
            self.backend.drop(self.version)
        except IndexUnavailable as exc:  # the backend's own prune removes it later
            logger.warning("could not remove build %s: %s", self.version, exc)

    def store(self) -> dict:
        """Make the build durable before it becomes current; returns its version row's engine
        fields. Annoy: the files go to storage, and the row keeps their checksum, which every
        host checks its copy against (:class:`StorageUnavailable` when storage refuses). A live
        engine's collection is durable already."""
        if not self.backend.needs_fresh_segment:
            return {"backend": self.backend.name, "n_trees": 0, "checksum": ""}
        manifest = annoy_index.Manifest.from_json((self.folder / annoy_index.MANIFEST_FILE).read_text())
        try:
            store_artifact(self.folder, self._storage_prefix, manifest.files)
        except Exception as exc:  # a full disk, a bucket refusing: the run fails and is retried
            logger.error("index %s could not be stored: %s", self.version, exc)
            raise StorageUnavailable(f"The index could not be stored ({exc}); nothing was published.") from exc
        return {"backend": self.backend.name, "n_trees": manifest.n_trees, "checksum": manifest.checksum}

    def release(self, *, published: bool) -> None:
        """After activation, best effort (it never hides why a publish failed). Annoy: a
        published build becomes this host's cached copy (no need to fetch it back), a refused
        one leaves storage. A live engine drops a refused collection. What is left behind is
        swept by a later prune (:func:`sweep_leftovers`)."""
        try:
            if not self.backend.needs_fresh_segment:
                if not published:
                    self.discard()
                return
            if published:
                target = local_index_dir(self.version)
                if not target.exists():
                    self.folder.rename(target)
            else:
                for name in annoy_index.FILES:
                    default_storage.delete(f"{self._storage_prefix}/{name}")
        except Exception as exc:
            logger.warning("build %s was not cleaned up (a later prune does it): %s", self.version, exc)
        finally:
            if self.backend.needs_fresh_segment:
                self.discard()  # a published one was renamed away: nothing left to drop

    @property
    def _storage_prefix(self) -> str:
        return f"{settings.INDEX_STORAGE_PREFIX}/{self.version}"


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


def index_new_vectors(ids: list[int], vectors: np.ndarray, model_id: str) -> int:
    """On a live engine, make stored vectors searchable at once and mark their rows indexed;
    returns how many. On a snapshot engine they wait for the next build (its fresh segment).
    An unreachable engine fails the run (the vectors are stored: the next run's publish step
    catches up)."""
    if not len(ids) or not is_live():
        return 0
    hidden = Image.objects.filter(pk__in=list(ids), hidden=True).values_list("pk", flat=True)
    if not live_upsert(ids, vectors, model_id=model_id, hidden=list(hidden)):
        return 0
    return Image.objects.filter(pk__in=list(ids), status=Image.Status.PENDING, embedding_model=model_id).update(
        status=Image.Status.INDEXED
    )


def catch_up(model_id: str) -> bool:
    """A live engine's publish step while its current version holds ``model_id``: upsert the
    rows embedded but not yet in it (an upsert that failed) instead of rebuilding, and say so.
    ``False`` (a build is needed) on a snapshot engine, whose fresh segment serves new rows
    until the next build, and when no version of ``model_id`` serves."""
    current = serving_version() if is_live() else None
    if current is None or current.model != model_id:
        return False
    caught_up = 0
    ids = list(fresh_rows(model_id).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 2000):
        chunk = list(fresh_rows(model_id).filter(pk__in=ids[start : start + 2000]).values_list("pk", "embedding"))
        if not chunk:
            continue
        vectors = vectors_of(blob for _, blob in chunk)
        caught_up += index_new_vectors([pk for pk, _ in chunk], vectors, model_id)
    if caught_up:
        logger.info("upserted %d stored vectors into the current index version", caught_up)
    return True


def reconcile_visibility() -> tuple[int, int]:
    """Make a live engine's hidden rows match the database's, which is the truth: curation
    writes to the engine only after its transaction commits and only while the engine
    answers, so a write can be missed. The hourly run (and a rollback) call this. It reads
    the hidden rows of both sides, not every row. Rows the engine hides but the database no
    longer holds are deleted from the engine. Returns ``(hidden, shown)``."""
    if not is_live() or serving_version() is None:
        return 0, 0
    backend = index_backend()
    with index_errors():
        engine_hidden = backend.hidden_ids()
    database_hidden = set(Image.objects.filter(hidden=True).values_list("pk", flat=True))
    to_hide = sorted(database_hidden - engine_hidden)
    shown_in_database = sorted(engine_hidden - database_hidden)
    to_show, gone = [], set(shown_in_database)
    for start in range(0, len(shown_in_database), 2000):
        chunk = Image.objects.filter(pk__in=shown_in_database[start : start + 2000]).values_list("pk", flat=True)
        to_show += chunk
        gone -= set(chunk)
    with index_errors():
        hidden = backend.set_visible(to_hide, False) if to_hide else 0
        shown = backend.set_visible(to_show, True) if to_show else 0
        if gone:
            backend.delete(sorted(gone))
    if hidden or shown or gone:
        logger.warning(
            "the index disagreed with the database: hid %d, showed %d, deleted %d rows", hidden, shown, len(gone)
        )
    return hidden, shown


@receiver(images_visibility_changing, dispatch_uid="engine-visibility")
def _visibility_changing(sender, *, images, visible: bool, **kwargs) -> None:
    if is_live():  # a snapshot engine needs no ids: search drops hidden rows by the database
        live_set_visible(list(images.values_list("pk", flat=True)), visible)


@receiver(images_deleted, dispatch_uid="engine-delete")
def _deleted(sender, *, ids, **kwargs) -> None:
    live_delete(ids)

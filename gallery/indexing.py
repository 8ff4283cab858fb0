"""Services of the indexing pipeline: embed pending images, build and publish the index,
prune old versions. The management commands, the admin's "reindex" and the Airflow DAG all
run these same functions; each step is safe to run again."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from tqdm import tqdm

from gallery import clip, recall_gate
from gallery.artifacts import store_artifact
from gallery.errors import StorageUnavailable, Unavailable
from gallery.fresh_segment import fresh_rows
from gallery.index_backend import index_backend, index_errors, is_live, live_upsert
from gallery.index_cache import local_index_dir
from gallery.models import Image, IndexVersion, PublishLease
from indexer import index as annoy_index
from indexer.backends import IndexBackend, IndexReader, IndexUnavailable, VersionInfo, VersionNotFound
from indexer.pipeline import embed_sources

logger = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    embedded: int = 0
    failed: int = 0
    seconds: float = 0.0
    model_id: str = ""  # the model the embedding ran with (publish needs no model of its own then)
    # The rows embedded for the first time (new uploads, or queued again by a curator): the DAG's
    # near-duplicate and saved-search tasks take these, and only these. Rows re-embedded after a
    # model change are not listed: their duplicates and matches were looked for when they were new.
    ids: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "embedded": self.embedded, "failed": self.failed, "seconds": self.seconds, "model_id": self.model_id,
            "ids": list(self.ids),
        }

    @classmethod
    def total(cls, reports) -> "EmbedReport":
        """Sum of reports (or of their ``as_dict()`` forms) from parallel chunks."""
        rows = [r.as_dict() if isinstance(r, cls) else r for r in reports]
        total = cls(**{key: sum(row[key] for row in rows) for key in ("embedded", "failed", "seconds")})
        total.model_id = next((row["model_id"] for row in rows if row.get("model_id")), "")
        total.ids = sorted(pk for row in rows for pk in row.get("ids", ()))
        return total


def images_needing_embedding(model_id: str) -> QuerySet[Image]:
    """Pending rows without a vector of ``model_id``, and indexed rows embedded by another
    model (after CLIP_MODEL/CLIP_PRETRAINED changed)."""
    return Image.objects.filter(status__in=[Image.Status.PENDING, Image.Status.INDEXED]).filter(
        Q(embedding__isnull=True) | ~Q(embedding_model=model_id)
    )


def images_without_vector() -> QuerySet[Image]:
    """New uploads: rows that no model has embedded yet."""
    return Image.objects.filter(status__in=[Image.Status.PENDING, Image.Status.INDEXED], embedding__isnull=True)


def pending_chunks(*, chunk_size: int, new_only: bool = False) -> list[list[int]]:
    """Ids of the images to embed, in chunks that workers can embed in parallel. ``new_only``
    (a run started by uploads) lists the rows without a vector, which takes no model to find;
    otherwise rows embedded by another model are listed too, which takes loading this one."""
    queryset = images_without_vector() if new_only else images_needing_embedding(clip.embedder().model_id)
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    chunks = [ids[start : start + chunk_size] for start in range(0, len(ids), chunk_size)]
    logger.info("%d images to embed in %d chunk(s)", len(ids), len(chunks))
    return chunks


def images_embed_pending(
    *, ids: list[int] | None = None, batch_size: int | None = None, progress: bool = False
) -> EmbedReport:
    """Embed images that need it (or those of ``ids`` that still need it) and store their
    vectors. They stay pending until an index containing them is published, or, on a live
    engine (Milvus), until they are upserted into its current version, right here."""
    model = clip.embedder()
    queryset = images_needing_embedding(model.model_id)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    todo = list(queryset.order_by("pk").values_list("pk", "file"))
    first_time = set(queryset.filter(embedding_model="").values_list("pk", flat=True))
    report = EmbedReport(model_id=model.model_id)
    if not todo:
        return report
    started = time.perf_counter()
    sources = [(pk, _reader(name)) for pk, name in todo]
    bar = tqdm(total=len(todo), desc="Embedding", unit="img", disable=not progress)
    for batch in embed_sources(sources, model, batch_size=batch_size or settings.EMBED_BATCH_SIZE):
        for pk, exc in batch.failures:
            if isinstance(exc, StorageUnavailable):  # transient: the rows stay pending, the run fails and retries
                raise exc
        now = timezone.now()
        with transaction.atomic():
            for pk, vector in zip(batch.keys, batch.vectors):
                Image.objects.filter(pk=pk).update(
                    embedding=vector.tobytes(),
                    embedding_model=model.model_id,
                    embedded_at=now,
                    status=Image.Status.PENDING,
                    error="",
                )
            for pk, exc in batch.failures:
                reason = f"{type(exc).__name__}: {exc}"
                logger.warning("image %s could not be embedded: %s", pk, reason)
                Image.objects.filter(pk=pk).update(status=Image.Status.FAILED, error=reason[:2000])
        _index_live(batch.keys, batch.vectors, model.model_id)
        report.embedded += len(batch.keys)
        report.ids += [int(pk) for pk in batch.keys if pk in first_time]
        report.failed += len(batch.failures)
        bar.update(len(batch.keys) + len(batch.failures))
    bar.close()
    report.seconds = time.perf_counter() - started
    logger.info(
        "embedded %d images (%d failed) in %.1f s, %.1f images/s with %s",
        report.embedded, report.failed, report.seconds, report.rate, model.model_id,
    )
    return report


def _index_live(ids: list[int], vectors: np.ndarray, model_id: str) -> int:
    """On a live engine, make stored vectors searchable at once and mark their rows indexed.
    An unreachable engine fails the run (the vectors are stored: the next run's publish step
    catches up); elsewhere the rows stay pending."""
    if not len(ids) or not is_live():
        return 0
    hidden = Image.objects.filter(pk__in=list(ids), hidden=True).values_list("pk", flat=True)
    if not live_upsert(ids, vectors, model_id=model_id, hidden=list(hidden)):
        return 0
    return Image.objects.filter(pk__in=list(ids), status=Image.Status.PENDING, embedding_model=model_id).update(
        status=Image.Status.INDEXED
    )


def index_catch_up(model_id: str) -> int:
    """A live engine's publish step while its current version holds ``model_id``: upsert the
    rows embedded but not yet in it (an upsert that failed), instead of rebuilding."""
    caught_up = 0
    ids = list(fresh_rows(model_id).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 2000):
        chunk = list(fresh_rows(model_id).filter(pk__in=ids[start : start + 2000]).values_list("pk", "embedding"))
        if not chunk:
            continue
        vectors = np.vstack([np.frombuffer(bytes(blob), dtype=np.float32) for _, blob in chunk])
        caught_up += _index_live([pk for pk, _ in chunk], vectors, model_id)
    if caught_up:
        logger.info("upserted %d stored vectors into the current index version", caught_up)
    return caught_up


def index_reconcile_visibility() -> tuple[int, int]:
    """Make a live engine's hidden rows match the database's, which is the truth: curation
    writes to the engine only after its transaction commits and only while the engine
    answers, so a write can be missed. The hourly run (and a rollback) call this. It reads
    the hidden rows of both sides, not every row. Rows the engine hides but the database no
    longer holds are deleted from the engine. Returns ``(hidden, shown)``."""
    if not is_live() or _serving() is None:
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


def _reader(name: str):
    def read() -> bytes:
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                with default_storage.open(name, "rb") as handle:
                    return handle.read()
            except Exception as exc:
                if is_permanent_read_error(exc):
                    raise  # the image fails with this reason; the run goes on
                if attempt == READ_ATTEMPTS:
                    raise StorageUnavailable(f"storage could not be read ({exc})") from exc
                logger.warning("reading %s failed (%s); retrying", name, exc)
                time.sleep(READ_RETRY_SECONDS * attempt)
        raise AssertionError("unreachable")

    return read


READ_ATTEMPTS = 3  # per original and run; a store still failing then fails the run, which Airflow retries
READ_RETRY_SECONDS = 0.5


def is_permanent_read_error(exc: Exception) -> bool:
    """An original that will never read (gone, refused, not a file), as opposed to a store that
    is down for a moment (timeouts, 5xx, connections), which is worth retrying."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return 400 <= int(status) < 500 and int(status) not in (408, 429)
    return False


def index_is_stale(model_id: str) -> bool:
    """Whether publishing would change what search sees: new vectors, deletions, a new model.
    A live engine already holds deletions, so only vectors it has not taken in count there."""
    current = _serving()
    if current is None or current.model != model_id:
        return _indexable(model_id).exists()
    waiting = _indexable(model_id).filter(status=Image.Status.PENDING).exists()
    return waiting or (not is_live() and _indexable(model_id).count() != current.item_count)


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


def index_publish(
    *, force: bool = False, embed_report: EmbedReport | None = None, progress: bool = False
) -> IndexVersion | None:
    """Build an index over every stored vector of the configured model, publish it as a new
    version, make it current and mark its pending rows indexed. Returns ``None`` when
    nothing changed since the current version (unless ``force``), nothing is embedded, or
    another process is publishing (its index will hold these rows, or the next run's will)."""
    model_id = clip.embedder().model_id
    if not _should_publish(model_id, force=force):
        return None
    with publish_lease() as held:
        if not held:
            logger.info("another process is building an index; this run publishes nothing")
            return None
        if not force and is_live() and _holds_model(model_id):
            # A live engine already holds what was upserted; rebuild only for a new model.
            index_catch_up(model_id)
            return None
        build = index_build(model_id, progress=progress)
        if build is None or not recall_gate.admit(build, force=force):  # a refused build is recorded and discarded
            return None
        return index_activate(build, embed_report=embed_report or EmbedReport())


def fresh_segment_size(model_id: str | None = None) -> int:
    """How many vectors search reads exactly, outside the built index (the fresh segment)."""
    return fresh_rows(model_id or clip.embedder().model_id).count()


def index_compact_if_due(
    *, force_hourly: bool, embed_report: EmbedReport | None = None, progress: bool = False
) -> IndexVersion | None:
    """The frequent run's publish step: rebuild the index over everything (a compaction) when
    this is the hourly run, when the fresh segment has grown past ``FRESH_SEGMENT_MAX``, or when
    the configured model has no index yet (the old model's index cannot answer its queries).
    Otherwise the new vectors are already searchable in the fresh segment; nothing is built."""
    if is_live():  # new vectors are searchable already: publish only a first version or a new model's
        version = index_publish(embed_report=embed_report, progress=progress)
        if force_hourly:
            index_reconcile_visibility()
        return version
    current = IndexVersion.objects.current()
    if embed_report and embed_report.model_id:
        model_id = embed_report.model_id  # the embed tasks loaded the model already
    elif current is not None and not force_hourly:
        model_id = current.model  # nothing embedded by this run: no model built just for its name
    else:
        model_id = clip.embedder().model_id
    size = fresh_segment_size(model_id)
    # Another model's index, or one in the backend INDEX_BACKEND left, cannot answer: rebuild.
    model_changed = current is not None and (current.model != model_id or current.backend != settings.INDEX_BACKEND)
    if not (force_hourly or size > settings.FRESH_SEGMENT_MAX or model_changed):
        logger.info("fresh segment holds %d vectors (compaction past %d): no rebuild this run", size, settings.FRESH_SEGMENT_MAX)
        return None
    logger.info("compacting: fresh segment holds %d vectors%s", size, " (hourly run)" if force_hourly else "")
    return index_publish(embed_report=embed_report, progress=progress)


def _serving() -> IndexVersion | None:
    """The current version if the configured backend holds it: after INDEX_BACKEND changed, a
    version of the other backend serves nothing, and the next publish builds one afresh."""
    current = IndexVersion.objects.current()
    return current if current is not None and current.backend == settings.INDEX_BACKEND else None


def _holds_model(model_id: str) -> bool:
    current = _serving()
    return current is not None and current.model == model_id


def _should_publish(model_id: str, *, force: bool) -> bool:
    if force:
        return True
    if not index_is_stale(model_id):
        logger.info("nothing new: the current index stays")
        return False
    current = IndexVersion.objects.current()
    if current and current.model != model_id and images_needing_embedding(model_id).exists():
        # A new model or runtime: never publish a partial index; the old one serves meanwhile.
        logger.info("re-embedding with %s is not finished; index %s keeps serving", model_id, current.version)
        return False
    return True


def index_build(model_id: str, *, progress: bool = False) -> IndexBuild | None:
    """Read every stored vector of ``model_id`` and build a complete version in the backend
    (Annoy: on local disk; Milvus: a new collection), not yet current."""
    snapshot_at = timezone.now()
    ids, vectors, visible = _load_vectors(model_id, progress=progress)
    if not len(ids):
        logger.info("no embedded images yet; nothing to publish")
        return None
    backend = index_backend()
    with index_errors():
        info = backend.publish(ids, vectors, model_id=model_id, visible=visible)
    return IndexBuild(info=info, ids=ids, snapshot_at=snapshot_at, backend=backend)


def index_activate(build: IndexBuild, *, embed_report: EmbedReport) -> IndexVersion | None:
    """Make ``build`` current unless a build that read its vectors later is current already
    (two publishers racing: the older one must never win). Annoy: the files go to storage
    first, and the local build becomes this host's cached copy. Milvus: the alias moves in the
    same transaction as the database's pointer. A failed or refused publish leaves nothing."""
    info, live = build.info, not build.backend.needs_fresh_segment
    prefix = f"{settings.INDEX_STORAGE_PREFIX}/{info.version}"
    version = None
    try:
        if not live:
            store_artifact(build.folder, prefix, annoy_index.FILES)
        version = _make_current(build, embed_report)
        if version is None:
            logger.warning("index %s was built from older vectors than the current one; not published", info.version)
            if not live:
                for name in annoy_index.FILES:
                    default_storage.delete(f"{prefix}/{name}")
            return None
        target = local_index_dir(info.version)
        if not live and not target.exists():
            build.folder.rename(target)  # no need to fetch it back
    finally:
        if version is None or not live:
            build.discard()
    logger.info("published index %s: %d images, built in %.1f s", info.version, info.item_count, info.build_seconds)
    return version


def _make_current(build: IndexBuild, embed_report: EmbedReport) -> IndexVersion | None:
    info, live = build.info, not build.backend.needs_fresh_segment
    # Annoy's record keeps its files' checksum, which every host checks its copy against.
    manifest = None if live else annoy_index.Manifest.from_json((build.folder / annoy_index.MANIFEST_FILE).read_text())
    with transaction.atomic():
        current = IndexVersion.objects.select_for_update().filter(is_current=True)
        if IndexVersion.objects.filter(snapshot_at__gt=build.snapshot_at).exists():
            return None
        current.update(is_current=False)
        version = IndexVersion.objects.create(
            version=info.version,
            backend=build.backend.name,
            model=info.model,
            dim=info.dim,
            item_count=info.item_count,
            n_trees=manifest.n_trees if manifest else 0,
            checksum=manifest.checksum if manifest else "",
            snapshot_at=build.snapshot_at,
            embedded_count=embed_report.embedded,
            embed_seconds=round(embed_report.seconds, 3),
            build_seconds=info.build_seconds,
            is_current=True,
        )
        if live:
            with index_errors():  # fails the transaction: the old version stays current everywhere
                build.backend.activate(info.version)
        # Only rows whose vectors are in this build become indexed; later ones stay pending.
        pending = Image.objects.filter(status=Image.Status.PENDING, embedding_model=info.model)
        waiting = np.fromiter(pending.values_list("pk", flat=True), dtype=np.int64)
        included = waiting[np.isin(waiting, build.ids)].tolist()
        for start in range(0, len(included), 500):
            pending.filter(pk__in=included[start : start + 500]).update(status=Image.Status.INDEXED)
    return version


@contextmanager
def publish_lease(*, seconds: int | None = None):
    """Yields whether this process holds the publish lease (one publisher at a time)."""
    seconds = settings.INDEX_PUBLISH_LEASE_SECONDS if seconds is None else seconds
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    PublishLease.objects.get_or_create(pk=1)
    now = timezone.now()
    held = bool(
        PublishLease.objects.filter(pk=1)
        .filter(Q(holder="") | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=now + timedelta(seconds=seconds))
    )
    try:
        yield held
    finally:
        if held:
            PublishLease.objects.filter(pk=1, holder=holder).update(holder="", expires_at=None)


def _indexable(model_id: str) -> QuerySet[Image]:
    return Image.objects.filter(embedding_model=model_id, embedding__isnull=False).exclude(status=Image.Status.FAILED)


def _load_vectors(model_id: str, *, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, visible) of every indexable row; hidden rows are built in, marked invisible."""
    rows = _indexable(model_id).order_by("pk").values_list("pk", "embedding", "hidden")
    total = rows.count()
    ids = np.empty(total, dtype=np.int64)
    visible = np.empty(total, dtype=bool)
    vectors: list[np.ndarray] = []
    for n, (pk, blob, hidden) in enumerate(tqdm(rows.iterator(chunk_size=2000), total=total, desc="Reading vectors", disable=not progress)):
        if n >= total:  # rows added while reading go to the next build
            break
        ids[n], visible[n] = pk, not hidden
        vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
    ids, visible = ids[: len(vectors)], visible[: len(vectors)]
    return ids, (np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)), visible


def index_prune(*, keep: int | None = None, grace_seconds: int | None = None) -> list[str]:
    """Delete all but the newest ``keep`` versions (the current one always stays), once the
    version that replaced each has been current for ``grace_seconds``: web processes that have
    not yet swapped may still be reading it."""
    keep = settings.INDEX_KEEP_VERSIONS if keep is None else keep
    grace = settings.INDEX_PRUNE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = timezone.now() - timedelta(seconds=grace)
    versions = list(IndexVersion.objects.order_by("-created_at", "-pk"))
    removed = []
    for successor, version in zip(versions, versions[1:]):
        if version.is_current or versions.index(version) < keep or successor.created_at > cutoff:
            continue
        if version.backend != "annoy":
            if version.backend == settings.INDEX_BACKEND:
                with index_errors():  # the task fails and retries; the row stays until the version is gone
                    index_backend().drop(version.version)
            else:
                logger.warning("index %s is in %s, which is no longer configured: drop it there", version.version, version.backend)
        else:
            for name in annoy_index.FILES:
                default_storage.delete(f"{version.storage_prefix}/{name}")
            shutil.rmtree(local_index_dir(version.version), ignore_errors=True)
        version.delete()
        removed.append(version.version)
    if removed:
        logger.info("pruned index versions %s", ", ".join(removed))
    return removed


def index_rollback() -> IndexVersion:
    """Serve the version published before the current one again (undo a bad publish), on
    every process at once: the database's pointer moves, and on Milvus the alias with it. Rows
    embedded after that version read its vectors go back to pending, so they stay searchable:
    through the fresh segment on Annoy, upserted into the older collection again on Milvus.
    The next publish builds afresh. :class:`VersionNotFound` when no earlier version is kept."""
    live = is_live()
    with transaction.atomic():
        current = IndexVersion.objects.select_for_update().filter(is_current=True).first()
        if current is None:
            raise VersionNotFound("No index version is current: nothing to roll back.")
        previous = IndexVersion.objects.filter(
            Q(created_at__lt=current.created_at) | Q(created_at=current.created_at, pk__lt=current.pk),
            backend=settings.INDEX_BACKEND,
        ).first()  # the newest before it (Meta.ordering)
        if previous is None:
            raise VersionNotFound(f"No version older than {current.version} is kept: nothing to roll back to.")
        IndexVersion.objects.filter(pk=current.pk).update(is_current=False)
        IndexVersion.objects.filter(pk=previous.pk).update(is_current=True)
        if live:
            with index_errors():  # fails the transaction: nothing moved
                index_backend().activate(previous.version)
        later = Image.objects.filter(status=Image.Status.INDEXED, embedding_model=previous.model)
        if previous.snapshot_at is not None:
            later.filter(embedded_at__gt=previous.snapshot_at).update(status=Image.Status.PENDING)
    if live:  # the older collection missed what changed since it was current
        index_catch_up(previous.model)
        try:
            index_reconcile_visibility()
        except Unavailable:  # the rollback stands; search filters by the database, the hourly run repairs
            logger.warning("the rolled-back version's hidden rows could not be matched to the database now")
    logger.warning("rolled back from index %s to %s", current.version, previous.version)
    previous.refresh_from_db()
    return previous


@dataclass
class PipelineReport:
    embed: EmbedReport
    published: IndexVersion | None
    pruned: list[str]


def new_images_match(embed: EmbedReport) -> None:
    """What the DAG's near_duplicates and saved_search_matches tasks do with an embed run's new
    images, for the commands that embed without the DAG (``index_refresh``, ``embed_pending``):
    without it, those images would never be checked, since no later run sees them as new. OCR,
    the slow step, is left to the DAG's read_text task and ``manage.py read_text``."""
    # The DAG's own tasks, not steps of embedding: the write path does not call them itself.
    from gallery.duplicates import near_duplicates_find
    from gallery.saved_searches import saved_searches_record_matches

    near_duplicates_find(image_ids=embed.ids)
    saved_searches_record_matches(image_ids=embed.ids, model_id=embed.model_id)


def index_refresh(*, progress: bool = False) -> PipelineReport:
    """The whole pipeline inline, the DAG's tasks in turn: embed what is pending, look for
    near-duplicates and saved-search matches among the new images, publish if anything
    changed, prune."""
    embed = images_embed_pending(progress=progress)
    new_images_match(embed)
    published = index_publish(embed_report=embed, progress=progress)
    pruned = index_prune() if published else []
    return PipelineReport(embed=embed, published=published, pruned=pruned)


def index_refresh_now() -> str:
    """A curator's "reindex now": queue the Airflow DAG when Airflow is configured, otherwise
    run the pipeline here. Returns what happened, for people."""
    if settings.AIRFLOW_API_URL:
        from gallery.airflow_api import trigger_dag_run

        return f"Airflow run {trigger_dag_run()} queued; new images are searchable when it finishes."
    report = index_refresh()
    if report.published:
        return (
            f"Embedded {report.embed.embedded} images; published index {report.published.version} "
            f"with {report.published.item_count} images."
        )
    if report.embed.embedded and is_live():
        return f"Embedded {report.embed.embedded} images; they are searchable now in the current index."
    return f"Embedded {report.embed.embedded} images; the index was already up to date."

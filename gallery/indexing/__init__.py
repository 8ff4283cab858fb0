"""Services of the indexing pipeline: embed pending images, build and publish the index,
prune old versions. The management commands, the admin's "reindex" and the Airflow DAG all
run these same functions; each step is safe to run again."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from tqdm import tqdm

from gallery.catalogue import tombstones
from gallery.catalogue.sampling import pk_among
from gallery.engine import embedder
from gallery.engine.backend import (
    IndexBuild,
    activate,
    catch_up,
    drop_version,
    engine_versions,
    index_backend,
    index_errors,
    index_new_vectors,
    other_engine,
    reconcile_visibility,
    serving_version,
    stale_by_count,
    sweep_leftovers,
)
from gallery.engine.fresh_segment import fresh_rows
from gallery.errors import NoVersion, StorageUnavailable, Unavailable
from gallery.indexing import recall_gate
from gallery.models import Image, IndexVersion, PublishLease, decode_vector
from indexer.pipeline import embed_sources

logger = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    embedded: int = 0
    failed: int = 0
    seconds: float = 0.0
    model_id: str = ""  # the model the embedding ran with (publish needs no model of its own then)
    indexed: int = 0  # of those, searchable at once in a live engine's current version
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
            "indexed": self.indexed, "ids": list(self.ids),
        }

    @classmethod
    def total(cls, reports) -> "EmbedReport":
        """Sum of reports (or of their ``as_dict()`` forms) from parallel chunks."""
        rows = [r.as_dict() if isinstance(r, cls) else r for r in reports]
        total = cls(**{key: sum(row.get(key, 0) for row in rows) for key in ("embedded", "failed", "seconds", "indexed")})
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
    queryset = images_without_vector() if new_only else images_needing_embedding(embedder.embedder().model_id)
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
    model = embedder.embedder()
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
    batches = embed_sources(sources, model, batch_size=batch_size or settings.EMBED_BATCH_SIZE)
    for batch in _translated(batches):
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
        report.indexed += index_new_vectors(batch.keys, batch.vectors, model.model_id)
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


def _translated(batches):
    """The embed batches, with the model's failures (a tower that fails on first use) as the
    gallery's :class:`ModelUnavailable`."""
    with embedder.model_errors():
        yield from batches


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
    current = serving_version()
    if current is None or current.model != model_id:
        return _indexable(model_id).exists()
    waiting = _indexable(model_id).filter(status=Image.Status.PENDING).exists()
    return waiting or stale_by_count(current, _indexable(model_id))


def index_publish(
    *, force: bool = False, embed_report: EmbedReport | None = None, progress: bool = False
) -> IndexVersion | None:
    """Build an index over every stored vector of the configured model, publish it as a new
    version, make it current and mark its pending rows indexed. Returns ``None`` when
    nothing changed since the current version (unless ``force``), nothing is embedded, or
    another process is publishing (its index will hold these rows, or the next run's will)."""
    # The embed step's report names its model: no model is loaded just for its name.
    model_id = embed_report.model_id if embed_report and embed_report.model_id else embedder.embedder().model_id
    if not _should_publish(model_id, force=force):
        return None
    with publish_lease() as held:
        if not held:
            logger.info("another process is building an index; this run publishes nothing")
            return None
        if not force and catch_up(model_id):  # a live engine took what it missed: no rebuild
            return None
        build = index_build(model_id, progress=progress)
        if build is None or not recall_gate.admit(build, force=force):  # a refused build is recorded and discarded
            return None
        return index_activate(build, embed_report=embed_report or EmbedReport())


def fresh_segment_size(model_id: str | None = None) -> int:
    """How many vectors search reads exactly, outside the built index (the fresh segment)."""
    return fresh_rows(model_id or embedder.embedder().model_id).count()


@dataclass
class PublishStep:
    """What an indexing run's publish step did: the version a live engine published (a first
    one, or a new model's), and whether a compaction should follow."""

    version: IndexVersion | None = None
    compaction_due: bool = False


def index_publish_new(*, scheduled: bool, embed_report: EmbedReport | None = None, progress: bool = False) -> PublishStep:
    """The indexing run's publish step, cheap on a snapshot engine whatever the gallery's size.

    A live engine (Milvus) has the new vectors searchable already: here it publishes only a first
    version or a new model's, and catches up what an embed could not upsert; a compaction
    follows on the ``scheduled`` run (hourly or manual: repairs hidden rows the engine missed).
    A snapshot engine (Annoy) builds nothing here: the new vectors are searchable in the fresh
    segment, and a compaction (a rebuild over everything) is due on the ``scheduled`` run, when
    the fresh segment has grown past ``FRESH_SEGMENT_MAX``, or when the configured model has no
    index yet (the old model's index cannot answer its queries). The DAG runs the compaction in
    a DAG of its own, so runs started by uploads never wait for a rebuild (minutes at a million
    images)."""
    if not index_backend().needs_fresh_segment:
        return PublishStep(version=index_publish(embed_report=embed_report, progress=progress), compaction_due=scheduled)
    current = IndexVersion.objects.current()
    if embed_report and embed_report.model_id:
        model_id = embed_report.model_id  # the embed tasks loaded the model already
    elif current is not None and not scheduled:
        model_id = current.model  # nothing embedded by this run: no model built just for its name
    else:
        model_id = embedder.embedder().model_id
    size = fresh_segment_size(model_id)
    # Another model's index, or one in the engine configured before, cannot answer: rebuild.
    model_changed = current is not None and (current.model != model_id or other_engine(current))
    if not (scheduled or size > settings.FRESH_SEGMENT_MAX or model_changed):
        logger.info("fresh segment holds %d vectors (compaction past %d): no rebuild this run", size, settings.FRESH_SEGMENT_MAX)
        return PublishStep()
    logger.info("compaction due: fresh segment holds %d vectors%s", size, " (scheduled run)" if scheduled else "")
    return PublishStep(compaction_due=True)


def index_compact(*, embed_report: EmbedReport | None = None, progress: bool = False) -> IndexVersion | None:
    """A compaction: rebuild the index over every stored vector and publish it when anything
    changed (``index_publish``); on a live engine, publish what it lacks and repair the hidden
    rows it missed."""
    version = index_publish(embed_report=embed_report, progress=progress)
    if not index_backend().needs_fresh_segment:
        reconcile_visibility()
    return version


def index_compact_if_due(
    *, scheduled: bool, embed_report: EmbedReport | None = None, progress: bool = False
) -> IndexVersion | None:
    """The publish step and, when it asks for one, the compaction, inline (the DAG runs the
    compaction in a DAG of its own). Returns the version published, if any."""
    step = index_publish_new(scheduled=scheduled, embed_report=embed_report, progress=progress)
    compacted = index_compact(embed_report=embed_report, progress=progress) if step.compaction_due else None
    return compacted or step.version


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
    (two publishers racing: the older one must never win). The engine stores it first (Annoy:
    its files go to storage) and moves its own pointer inside the transaction that moves the
    database's (Milvus: the alias). A failed or refused publish leaves nothing."""
    info = build.info
    version = None
    try:
        version = _make_current(build, embed_report, build.store())
        if version is None:
            logger.warning("index %s was built from older vectors than the current one; not published", info.version)
            return None
    finally:
        build.release(published=version is not None)
    logger.info("published index %s: %d images, built in %.1f s", info.version, info.item_count, info.build_seconds)
    return version


def _make_current(build: IndexBuild, embed_report: EmbedReport, engine_fields: dict) -> IndexVersion | None:
    info = build.info
    with transaction.atomic():
        current = IndexVersion.objects.select_for_update().filter(is_current=True)
        if IndexVersion.objects.filter(snapshot_at__gt=build.snapshot_at).exists():
            return None
        current.update(is_current=False)
        version = IndexVersion.objects.create(
            version=info.version,
            model=info.model,
            dim=info.dim,
            item_count=info.item_count,
            snapshot_at=build.snapshot_at,
            embedded_count=embed_report.embedded,
            embed_seconds=round(embed_report.seconds, 3),
            build_seconds=info.build_seconds,
            is_current=True,
            **engine_fields,
        )
        activate(info.version)  # a failure fails the transaction: the old version stays current everywhere
        # Only rows whose vectors are in this build become indexed; later ones stay pending.
        pending = Image.objects.filter(status=Image.Status.PENDING, embedding_model=info.model)
        waiting = np.fromiter(pending.values_list("pk", flat=True), dtype=np.int64)
        included = waiting[np.isin(waiting, build.ids)].tolist()
        if included:
            pending.filter(pk_among(included)).update(status=Image.Status.INDEXED)
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
    return Image.objects.indexable(model_id)


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
        vectors.append(decode_vector(blob))
    ids, visible = ids[: len(vectors)], visible[: len(vectors)]
    return ids, (np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)), visible


def index_prune(*, keep: int | None = None, grace_seconds: int | None = None) -> list[str]:
    """Delete all but the newest ``keep`` versions (the current one always stays), once the
    version that replaced each has been current for ``grace_seconds``: web processes that have
    not yet swapped may still be reading it. Then drop the builds that the engine holds but the
    database does not know, once older than the publish lease (their publisher died)."""
    keep = settings.INDEX_KEEP_VERSIONS if keep is None else keep
    grace = settings.INDEX_PRUNE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = timezone.now() - timedelta(seconds=grace)
    versions = list(IndexVersion.objects.order_by("-created_at", "-pk"))
    removed = []
    for successor, version in zip(versions, versions[1:]):
        if version.is_current or versions.index(version) < keep or successor.created_at > cutoff:
            continue
        drop_version(version)  # fails the task when the engine is down: the row stays, the retry drops it
        version.delete()
        removed.append(version.version)
    if removed:
        logger.info("pruned index versions %s", ", ".join(removed))
    _prune_tombstones(grace)
    sweep_leftovers()  # builds the database does not know, older than any publish in flight
    return removed


def _prune_tombstones(grace: int) -> None:
    """Drop the tombstones of images deleted before the oldest kept version read its vectors
    (no version that could be served holds them), less ``grace`` for the database's clock,
    which wrote them, against this process's. None while a kept version's reading time is
    unknown (a version published before it was recorded)."""
    kept = IndexVersion.objects.aggregate(oldest=Min("snapshot_at"), unknown=Count("pk", filter=Q(snapshot_at__isnull=True)))
    if kept["oldest"] is None or kept["unknown"]:
        return
    if dropped := tombstones.prune(kept["oldest"] - timedelta(seconds=grace)):
        logger.info("dropped %d tombstones of images no kept index version holds", dropped)


def index_rollback() -> IndexVersion:
    """Serve the version published before the current one again (undo a bad publish), on
    every process at once: the database's pointer moves, and on Milvus the alias with it. Rows
    embedded after that version read its vectors go back to pending, so they stay searchable:
    through the fresh segment on Annoy, upserted into the older collection again on Milvus.
    The next publish builds afresh. :class:`NoVersion` when no earlier version is kept."""
    with transaction.atomic():
        current = IndexVersion.objects.select_for_update().filter(is_current=True).first()
        if current is None:
            raise NoVersion("No index version is current: nothing to roll back.")
        previous = engine_versions().filter(
            Q(created_at__lt=current.created_at) | Q(created_at=current.created_at, pk__lt=current.pk)
        ).first()  # the newest before it (Meta.ordering)
        if previous is None:
            raise NoVersion(f"No version older than {current.version} is kept: nothing to roll back to.")
        IndexVersion.objects.filter(pk=current.pk).update(is_current=False)
        IndexVersion.objects.filter(pk=previous.pk).update(is_current=True)
        activate(previous.version)  # a failure fails the transaction: nothing moved
        later = Image.objects.filter(status=Image.Status.INDEXED, embedding_model=previous.model)
        if previous.snapshot_at is not None:
            later.filter(embedded_at__gt=previous.snapshot_at).update(status=Image.Status.PENDING)
    # A live engine's older collection missed what changed since it was current.
    catch_up(previous.model)
    try:
        reconcile_visibility()
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
    from gallery.indexing.duplicates import near_duplicates_find
    from gallery.search.saved_searches import saved_searches_record_matches

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
        from gallery.indexing.airflow_api import trigger_dag_run

        return f"Airflow run {trigger_dag_run()} queued; new images are searchable when it finishes."
    report = index_refresh()
    if report.published:
        return (
            f"Embedded {report.embed.embedded} images; published index {report.published.version} "
            f"with {report.published.item_count} images."
        )
    if report.embed.indexed:
        return f"Embedded {report.embed.embedded} images; they are searchable now in the current index."
    return f"Embedded {report.embed.embedded} images; the index was already up to date."

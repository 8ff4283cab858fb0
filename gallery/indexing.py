"""Services of the indexing pipeline: embed pending images, build and publish the index,
prune old versions. The management commands, the admin's "reindex" and the Airflow DAG all
run these same functions; each step is safe to run again."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from tqdm import tqdm

from gallery import clip, storage_cache
from gallery.index_cache import cache_dir
from gallery.models import Image, IndexVersion
from gallery.uploads import StorageUnavailable
from indexer import index as annoy_index
from indexer.pipeline import embed_sources

logger = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    embedded: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"embedded": self.embedded, "failed": self.failed, "seconds": self.seconds}

    @classmethod
    def total(cls, reports) -> "EmbedReport":
        """Sum of reports (or of their ``as_dict()`` forms) from parallel chunks."""
        rows = [r.as_dict() if isinstance(r, cls) else r for r in reports]
        return cls(**{key: sum(row[key] for row in rows) for key in ("embedded", "failed", "seconds")})


def images_needing_embedding(model_id: str) -> QuerySet[Image]:
    """Pending rows without a vector of ``model_id``, and indexed rows embedded by another
    model (after CLIP_MODEL/CLIP_PRETRAINED changed)."""
    return Image.objects.filter(status__in=[Image.Status.PENDING, Image.Status.INDEXED]).filter(
        Q(embedding__isnull=True) | ~Q(embedding_model=model_id)
    )


def pending_chunks(*, chunk_size: int) -> list[list[int]]:
    """Ids of the images to embed, in chunks that workers can embed in parallel."""
    model_id = clip.embedder().model_id
    ids = list(images_needing_embedding(model_id).order_by("pk").values_list("pk", flat=True))
    chunks = [ids[start : start + chunk_size] for start in range(0, len(ids), chunk_size)]
    logger.info("%d images to embed in %d chunk(s)", len(ids), len(chunks))
    return chunks


def images_embed_pending(
    *, ids: list[int] | None = None, batch_size: int | None = None, progress: bool = False
) -> EmbedReport:
    """Embed images that need it (or those of ``ids`` that still need it) and store their
    vectors. They stay pending until an index containing them is published."""
    model = clip.embedder()
    queryset = images_needing_embedding(model.model_id)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    todo = list(queryset.order_by("pk").values_list("pk", "file"))
    report = EmbedReport()
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
        report.embedded += len(batch.keys)
        report.failed += len(batch.failures)
        bar.update(len(batch.keys) + len(batch.failures))
    bar.close()
    report.seconds = time.perf_counter() - started
    logger.info(
        "embedded %d images (%d failed) in %.1f s, %.1f images/s with %s",
        report.embedded, report.failed, report.seconds, report.rate, model.model_id,
    )
    return report


def _reader(name: str):
    def read() -> bytes:
        try:
            with default_storage.open(name, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise  # the file is gone for good: the image fails
        except Exception as exc:
            raise StorageUnavailable(f"storage could not be read ({exc})") from exc

    return read


def index_is_stale(model_id: str) -> bool:
    """Whether a rebuild would change what search sees: new vectors, deletions, a new model."""
    current = IndexVersion.objects.filter(is_current=True).first()
    if current is None or current.model != model_id:
        return _indexable(model_id).exists()
    waiting = _indexable(model_id).filter(status=Image.Status.PENDING).exists()
    return waiting or _indexable(model_id).count() != current.item_count


def index_publish(
    *, force: bool = False, embed_report: EmbedReport | None = None, progress: bool = False
) -> IndexVersion | None:
    """Build an index over every stored vector of the configured model, publish it as a new
    version, make it current and mark its pending rows indexed. Returns ``None`` when
    nothing changed since the current version (unless ``force``) or nothing is embedded."""
    model_id = clip.embedder().model_id
    if not force and not index_is_stale(model_id):
        logger.info("nothing new: the current index stays")
        return None
    current = IndexVersion.objects.filter(is_current=True).first()
    if not force and current and current.model != model_id and images_needing_embedding(model_id).exists():
        # A new model or runtime: never publish a partial index; the old one serves meanwhile.
        logger.info("re-embedding with %s is not finished; index %s keeps serving", model_id, current.version)
        return None
    ids, vectors = _load_vectors(model_id, progress=progress)
    if not len(ids):
        logger.info("no embedded images yet; nothing to publish")
        return None
    builds = cache_dir() / "builds"
    manifest = annoy_index.build_index(ids, vectors, model=model_id, out_dir=builds, n_trees=settings.INDEX_TREES)
    built = builds / manifest.version
    try:
        version = _publish(manifest, built, embed_report or EmbedReport())
        # Keep the build as this process's cached copy: no need to fetch it back.
        if not (cache_dir() / manifest.version).exists():
            built.rename(cache_dir() / manifest.version)
    finally:
        shutil.rmtree(built, ignore_errors=True)  # a failed publish leaves no local copy behind
    logger.info(
        "published index %s: %d images, built in %.1f s", manifest.version, manifest.item_count, manifest.build_seconds
    )
    return version


def _indexable(model_id: str) -> QuerySet[Image]:
    return Image.objects.filter(embedding_model=model_id, embedding__isnull=False).exclude(status=Image.Status.FAILED)


def _load_vectors(model_id: str, *, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = _indexable(model_id).order_by("pk").values_list("pk", "embedding")
    total = rows.count()
    ids = np.empty(total, dtype=np.int64)
    vectors: list[np.ndarray] = []
    for n, (pk, blob) in enumerate(tqdm(rows.iterator(chunk_size=2000), total=total, desc="Reading vectors", disable=not progress)):
        if n >= total:  # rows added while reading go to the next build
            break
        ids[n] = pk
        vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
    ids = ids[: len(vectors)]
    return ids, (np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32))


def _publish(manifest: annoy_index.Manifest, built: Path, embed_report: EmbedReport) -> IndexVersion:
    storage_cache.publish(built, f"{settings.INDEX_STORAGE_PREFIX}/{manifest.version}", annoy_index.FILES)
    built_ids = np.load(built / annoy_index.IDS_FILE)
    with transaction.atomic():
        IndexVersion.objects.select_for_update().filter(is_current=True).update(is_current=False)
        version = IndexVersion.objects.create(
            version=manifest.version,
            model=manifest.model,
            dim=manifest.dim,
            item_count=manifest.item_count,
            n_trees=manifest.n_trees,
            checksum=manifest.checksum,
            embedded_count=embed_report.embedded,
            embed_seconds=round(embed_report.seconds, 3),
            build_seconds=manifest.build_seconds,
            is_current=True,
        )
        # Only rows whose vectors are in this build become indexed; later ones stay pending.
        pending = Image.objects.filter(status=Image.Status.PENDING, embedding_model=manifest.model)
        waiting = np.fromiter(pending.values_list("pk", flat=True), dtype=np.int64)
        included = waiting[np.isin(waiting, built_ids)].tolist()
        for start in range(0, len(included), 500):
            pending.filter(pk__in=included[start : start + 500]).update(status=Image.Status.INDEXED)
    return version


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
        for name in annoy_index.FILES:
            default_storage.delete(f"{version.storage_prefix}/{name}")
        shutil.rmtree(cache_dir() / version.version, ignore_errors=True)
        version.delete()
        removed.append(version.version)
    if removed:
        logger.info("pruned index versions %s", ", ".join(removed))
    return removed


@dataclass
class PipelineReport:
    embed: EmbedReport
    published: IndexVersion | None
    pruned: list[str]


def index_refresh(*, progress: bool = False) -> PipelineReport:
    """The whole pipeline inline: embed what is pending, publish if anything changed, prune."""
    embed = images_embed_pending(progress=progress)
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
    return f"Embedded {report.embed.embedded} images; the index was already up to date."

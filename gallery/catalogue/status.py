"""The status line's figures: how many images search finds, how many wait, which index serves.
Pages (``gallery.web.context_processors``), the API's status and search's own sizing read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q

from gallery.models import Image, IndexVersion
from indexer.embedding import RANDOM


@dataclass(frozen=True)
class IndexStatus:
    searchable: int  # visible images search finds: in the current index or the fresh segment
    fresh: int  # of those, embedded since the index was built (found by exact search until compaction)
    waiting: int  # not embedded yet
    failed: int
    built_at: datetime | None
    version: str | None
    model: str | None
    random_weights: bool  # results carry no meaning


STATUS_COUNTS_KEY = "gallery:index-status-counts"
SERVING_KEY = "gallery:index-status-serving"


def index_status() -> IndexStatus:
    """The status line's figures: the counts (:func:`index_counts`) and the serving version
    (:func:`serving_version`), each at most INDEX_STATUS_CACHE_SECONDS old: two cache lookups
    under every page and no query."""
    counts, serving = index_counts(), serving_version()
    model = serving["model"]
    return IndexStatus(
        searchable=searchable_count(counts),
        fresh=counts["fresh"],
        waiting=counts["waiting"],
        failed=counts["failed"],
        built_at=serving["built_at"],
        version=serving["version"],
        model=model,
        random_weights=settings.CLIP_PRETRAINED == RANDOM or bool(model and model.endswith("/" + RANDOM)),
    )


def serving_version() -> dict:
    """The serving index's ``version``, ``built_at`` and ``model`` (all None before the first
    publish), kept in Django's cache for INDEX_STATUS_CACHE_SECONDS like the counts: reading it
    for every page cost a query (0.36 ms on SQLite, 0.9-1.0 on PostgreSQL, a search page at a
    million images; 2 AMD EPYC cores, avx2 avx512f avx512_vnni avx512_bf16; section 31 of
    docs/performance.md) for a line whose counts were that old already. Search reads the version
    it serves each time, with the index (``gallery.engine.backend.search_view``)."""
    def read() -> dict:
        current = IndexVersion.objects.current("version", "created_at", "model")
        return {
            "version": current.version if current else None,
            "built_at": current.created_at if current else None,
            "model": current.model if current else None,
        }

    return cache.get_or_set(SERVING_KEY, read, settings.INDEX_STATUS_CACHE_SECONDS)  # 0: read every time


def searchable_count(counts: dict[str, int] | None = None) -> int:
    """Visible images search finds: in the current index or the fresh segment."""
    counts = counts or index_counts()
    return counts["indexed"] + counts["fresh"]


def index_counts() -> dict[str, int]:
    """How many images are indexed, fresh, waiting and failed. Counting reads every row (there
    is no index that answers four counts at once, and a maintained counter would be one more
    hot row every write touches), so the figures are cached for INDEX_STATUS_CACHE_SECONDS in
    Django's cache: a page costs a cache lookup, and one request per period (per process with
    the default local-memory cache) pays for the count."""
    def count() -> dict[str, int]:
        pending, indexed = Q(status=Image.Status.PENDING), Q(status=Image.Status.INDEXED)
        embedded, visible = Q(embedded_at__isnull=False), Q(hidden=False)
        return Image.objects.aggregate(  # one query for all four; COUNT(status), never null, so the index covers it
            indexed=Count("status", filter=indexed & visible),
            fresh=Count("status", filter=pending & embedded & visible),
            waiting=Count("status", filter=pending & ~embedded),
            failed=Count("status", filter=Q(status=Image.Status.FAILED)),
        )

    return cache.get_or_set(STATUS_COUNTS_KEY, count, settings.INDEX_STATUS_CACHE_SECONDS)  # 0: count every time

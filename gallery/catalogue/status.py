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
    for every page cost a query (0.4-1.0 ms of a search page at a million images, section 31 of
    docs/performance.md) for a line whose counts were that old already. Search reads the version
    it serves each time, with the index (``gallery.engine.backend.search_view``)."""
    serving = cache.get(SERVING_KEY)
    if serving is None:
        current = IndexVersion.objects.current("version", "created_at", "model")
        serving = {
            "version": current.version if current else None,
            "built_at": current.created_at if current else None,
            "model": current.model if current else None,
        }
        if settings.INDEX_STATUS_CACHE_SECONDS > 0:
            cache.set(SERVING_KEY, serving, settings.INDEX_STATUS_CACHE_SECONDS)
    return serving


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
    counts = cache.get(STATUS_COUNTS_KEY)
    if counts is None:
        pending, indexed = Q(status=Image.Status.PENDING), Q(status=Image.Status.INDEXED)
        embedded, visible = Q(embedded_at__isnull=False), Q(hidden=False)
        counts = Image.objects.aggregate(  # one query for all four; COUNT(status), never null, so the index covers it
            indexed=Count("status", filter=indexed & visible),
            fresh=Count("status", filter=pending & embedded & visible),
            waiting=Count("status", filter=pending & ~embedded),
            failed=Count("status", filter=Q(status=Image.Status.FAILED)),
        )
        if settings.INDEX_STATUS_CACHE_SECONDS > 0:
            cache.set(STATUS_COUNTS_KEY, counts, settings.INDEX_STATUS_CACHE_SECONDS)
    return counts

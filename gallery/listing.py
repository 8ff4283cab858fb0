"""Reads for the gallery grid and the status line (search lives in ``gallery.search``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from gallery import access
from gallery.models import Image, IndexVersion, Tag
from indexer.embedding import RANDOM


def gallery_images(user, *, tag: Tag | None = None) -> QuerySet[Image]:
    """What the gallery grid shows: every image ``user`` may see and nobody hid, newest first;
    with ``tag``, only the images that carry it."""
    images = access.viewable_images(user).filter(hidden=False)
    return images.filter(tags=tag) if tag is not None else images


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


def index_status() -> IndexStatus:
    current = IndexVersion.objects.current()
    model = current.model if current else None
    pending, indexed = Q(status=Image.Status.PENDING), Q(status=Image.Status.INDEXED)
    embedded, visible = Q(embedded_at__isnull=False), Q(hidden=False)
    counts = Image.objects.aggregate(  # one query, whatever the page
        indexed=Count("pk", filter=indexed & visible),
        fresh=Count("pk", filter=pending & embedded & visible),
        waiting=Count("pk", filter=pending & ~embedded),
        failed=Count("pk", filter=Q(status=Image.Status.FAILED)),
    )
    return IndexStatus(
        searchable=counts["indexed"] + counts["fresh"],
        fresh=counts["fresh"],
        waiting=counts["waiting"],
        failed=counts["failed"],
        built_at=current.created_at if current else None,
        version=current.version if current else None,
        model=model,
        random_weights=settings.CLIP_PRETRAINED == RANDOM or bool(model and model.endswith("/" + RANDOM)),
    )

"""Read-side queries for pages and commands (search lives in ``gallery.search``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, QuerySet

from gallery.models import Image, IndexVersion
from indexer.embedding import RANDOM


def gallery_images() -> QuerySet[Image]:
    """What the gallery grid shows: every visible image, newest first."""
    return Image.objects.filter(hidden=False).defer("embedding")


@dataclass(frozen=True)
class IndexStatus:
    searchable: int  # visible images in the current index
    waiting: int  # pending images
    failed: int
    built_at: datetime | None
    version: str | None
    model: str | None
    random_weights: bool  # results carry no meaning


def index_status() -> IndexStatus:
    current = IndexVersion.objects.filter(is_current=True).first()
    counts = dict(Image.objects.values_list("status").annotate(n=Count("pk")).order_by())
    model = current.model if current else None
    return IndexStatus(
        searchable=Image.objects.filter(status=Image.Status.INDEXED, hidden=False).count(),
        waiting=counts.get(Image.Status.PENDING, 0),
        failed=counts.get(Image.Status.FAILED, 0),
        built_at=current.created_at if current else None,
        version=current.version if current else None,
        model=model,
        random_weights=settings.CLIP_PRETRAINED == RANDOM or bool(model and model.endswith("/" + RANDOM)),
    )


"""How a set of images spreads over the years and months they were taken, cameras and tags:
the counts beside search results and the filtered gallery, each one a link that narrows to it.

Their cost does not grow with the gallery: search results are at most SEARCH_MAX_RESULTS ids;
a filtered gallery is counted on the uniform sample of ids that filtered search measures shares
by (``gallery.catalogue.sampling``: at most SAMPLE_SIZE rows, read by primary key, whatever the filter),
exactly while the sample is the whole gallery, and past that as estimates, each count scaled by
how many ids one sampled id stands for ("about N"). Finding every row a filter keeps could read
the whole table (no index serves "landscape"), which is what a page view must not do. Reading
the sample's rows still costs ~25 ms on SQLite, so a filtered gallery's facets are kept in the
cache for INDEX_STATUS_CACHE_SECONDS, the staleness the status line's counts already have. The
sample itself is drawn every SAMPLE_SECONDS (10 minutes) per process: images uploaded since then
are not counted until the next one.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from gallery.catalogue.sampling import among, id_sample, pk_among
from gallery.catalogue.visible import COLUMNS as VISIBLE_IDS_COLUMNS
from gallery.catalogue.visible import visible_among
from gallery.models import Image, Tag

# What the facets count of each image beside its tags: what the visible-ids index holds, so a
# search's results need no row read for them.
COLUMNS = VISIBLE_IDS_COLUMNS
FACET_SIZE = 10  # values shown per facet, largest first
MONTHS_SHOWN = 12  # a year's months, all of them (the page shows months when the results are of one year)
MIN_SAMPLED = 30  # sampled images below which an estimate says too little to show


@dataclass(frozen=True)
class Facets:
    years: dict[str, int] = field(default_factory=dict)  # "2023": n
    months: dict[str, int] = field(default_factory=dict)  # "2023-08": n
    cameras: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    estimated: bool = False  # counted on a sample, scaled: "about"

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"years": self.years, "months": self.months, "cameras": self.cameras, "tags": self.tags}


def of_ids(ids: list[int], *, weight: float = 1.0, estimated: bool = False, visible: bool = False) -> Facets:
    """The facets of these images (two queries over them), each count times ``weight``.
    ``visible``: they are all visible images (a search's results), whose dates and cameras the
    index of visible ids holds (``gallery.catalogue.visible``), so no row is read for them."""
    return of_rows(list(columns_of(ids, visible=visible).values()), ids, weight=weight, estimated=estimated)


def columns_of(ids: list[int], *, visible: bool = False) -> dict[int, tuple]:
    """id -> :data:`COLUMNS` of these images (one query); ``visible`` as in :func:`of_ids`."""
    rows = visible_among(ids, COLUMNS) if visible else Image.objects.filter(pk_among(ids)).order_by().values_list("pk", *COLUMNS)
    return {pk: tuple(read) for pk, *read in rows}


def of_rows(rows: list[tuple], ids: list[int], *, weight: float = 1.0, estimated: bool = False) -> Facets:
    """The facets of images whose :data:`COLUMNS` are ``rows`` (read already: a search reads
    them with its results' visibility) and whose ids are ``ids`` (their tags: one query)."""
    zone = timezone.get_current_timezone()
    by_month: Counter[tuple[int, int]] = Counter()
    cameras: Counter[str] = Counter(camera for _, camera in rows if camera)
    for taken_at, _ in rows:
        local = taken_at.astimezone(zone)
        by_month[local.year, local.month] += 1
    months = Counter({f"{year}-{month:02d}": n for (year, month), n in by_month.items()})
    years: Counter[str] = Counter()
    for (year, _), n in by_month.items():
        years[f"{year}"] += n
    tags = _tag_counts(ids)
    top = {name: {value: round(n * weight) for value, n in counter.most_common(size)}
           for name, counter, size in (("years", years, FACET_SIZE), ("months", months, MONTHS_SHOWN),
                                       ("cameras", cameras, FACET_SIZE), ("tags", tags, FACET_SIZE))}
    return Facets(**top, estimated=estimated)


def _tag_counts(ids: list[int]) -> Counter[str]:
    """How many of these images carry each tag. Plain SQL: the QuerySet's compile cost 0.3 ms of
    the 0.4 a search's facets spent on it (2 AMD EPYC cores, avx2 avx512f avx512_vnni
    avx512_bf16; section 31 of docs/performance.md)."""
    field, quote, wanted = Image.tags.field, connection.ops.quote_name, among(ids)
    through, tag = quote(field.m2m_db_table()), quote(Tag._meta.db_table)
    image_id, tag_id = quote(field.m2m_column_name()), quote(field.m2m_reverse_name())
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.name, COUNT(*) FROM {through} it JOIN {tag} t ON t.id = it.{tag_id}"
            f" WHERE it.{image_id} IN ({wanted.sql}) GROUP BY t.name",
            wanted.params,
        )
        return Counter(dict(cursor.fetchall()))


def of_gallery(images: QuerySet[Image], *, key: str) -> Facets:
    """``of_images``, kept in the cache under ``key`` (what selected ``images``: the filters and
    whether hidden ones may be among them) for INDEX_STATUS_CACHE_SECONDS."""
    cache_key = "gallery:facets:" + hashlib.sha256(key.encode()).hexdigest()
    return cache.get_or_set(cache_key, lambda: of_images(images), settings.INDEX_STATUS_CACHE_SECONDS)


def of_images(images: QuerySet[Image]) -> Facets:
    """The facets of a filtered gallery, on the id sample: exact while it is the whole gallery,
    estimated past it (empty when too few sampled images pass to say)."""
    sample = id_sample()
    passing = list(images.filter(pk_among(sample.ids)).order_by().values_list("pk", flat=True)) if sample.ids else []
    if sample.weight <= 1.0:
        return of_ids(passing)
    if len(passing) < MIN_SAMPLED:
        return Facets(estimated=True)
    return of_ids(passing, weight=sample.weight, estimated=True)

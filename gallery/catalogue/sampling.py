"""A uniform sample of the gallery's image ids, and ``pk IN ids`` written cheaply: what the
relevance rule (its background of stored vectors) and filtered search (the share a filter keeps)
both measure the gallery by. One sample per process, renewed every SAMPLE_SECONDS; reading it
costs two primary-key lookups and one query, whatever the gallery's size."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Lookup, Max, Min, Q
from django.db.models.expressions import RawSQL

from gallery.models import Image

SAMPLE_SIZE = 2000
SAMPLE_SECONDS = 600

_lock = threading.Lock()
_held: tuple[float, IdSample] | None = None


@dataclass(frozen=True)
class IdSample:
    ids: list[int]  # drawn uniformly from the primary key's range, ascending
    existing: int  # how many of them are images (the rest were deleted)
    span: int = 0  # the size of that range

    @property
    def weight(self) -> float:
        """How many ids of the range one sampled id stands for (1.0: the sample is the range)."""
        return self.span / len(self.ids) if self.ids else 0.0


def id_sample() -> IdSample:
    """This process's sample of image ids."""
    global _held
    now = time.monotonic()
    with _lock:
        if _held is not None and now - _held[0] < SAMPLE_SECONDS:
            return _held[1]
    bounds = Image.objects.aggregate(low=Min("pk"), high=Max("pk"))
    ids: list[int] = []
    span = range(0)
    if bounds["low"] is not None:
        span = range(bounds["low"], bounds["high"] + 1)
        ids = list(span) if len(span) <= SAMPLE_SIZE else sorted(random.Random(len(span)).sample(span, SAMPLE_SIZE))
    sample = IdSample(ids, Image.objects.filter(pk_among(ids)).count() if ids else 0, len(span))
    with _lock:
        _held = (now, sample)
    return sample


def pk_among(ids: list[int]) -> Q:
    """``pk IN ids`` with the ids as one parameter (a JSON array on SQLite, an array on
    PostgreSQL): Django's ``pk__in`` prepares every value on its own, ~10 us each, which for
    thousands of ids costs more than the query itself.

    On PostgreSQL ``pk = ANY(array)``, not ``IN`` the array's rows, which it joined after a hash
    of them: an UPDATE through it (publish marks every row of a build indexed, a million after
    an import) writes each row's new version in the order it meets the rows, and the hash's
    order scattered the newest rows over the heap (the newest 10,000 of a million on 2,465 pages
    instead of 386; a word's ranking reads them, docs/performance.md section 30). ``ANY`` has no
    such step: the rows come in the primary key's order or the table's, both the ids' order for
    rows inserted newest last."""
    if connection.vendor == "postgresql":
        return Q(_AnyOf(F("pk"), list(ids)))
    return Q(pk__in=among(ids))


class _AnyOf(Lookup):
    """``column = ANY(ids)``, the ids one array parameter (PostgreSQL)."""

    prepare_rhs = False  # a list of ids, not one value of the column

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::bigint[])", [*params, self.rhs]


def among(ids: list[int]) -> RawSQL:
    """The ids as one subquery, for any ``__in`` lookup (``image_id__in=among(ids)``)."""
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", [list(ids)])
    return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(list(ids))])


def forget() -> None:
    """Drop the sample held (tests)."""
    global _held
    with _lock:
        _held = None

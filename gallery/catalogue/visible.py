"""The visible images among given ids, with their dates and cameras, read from one small index.

Every search asks this of its ~320 ranked ids: which are still visible, and, to sort by date taken
or count its facets, their dates and cameras. From the rows, that is 320 reads scattered over the
table, and at a million images a SQLite row holds its 2 KB vector (a 4.5 GB file): 0.8-4.6 ms per
search for the ids alone, as the page cache held them, against 0.45 ms from the index (section 23
of docs/performance.md; 2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16). The partial
index of visible ids (migrations 0016-0018) holds these columns too. PostgreSQL's planner takes
it itself; SQLite's goes by rowid whatever index exists, unless the query names it (``INDEXED BY``).
Both read it in plain SQL: compiling the QuerySet cost more than running it.

A search that wants no columns (the API's, by relevance, without facets) asks the opposite:
which of its ids are hidden or deleted (``gallery.catalogue.tombstones``), from an index of the
hidden ids and the tombstones, a few rows each, where the index of visible ids holds the whole
gallery (1.04 ms at a million images against 0.45 at ten thousand: section 27).
"""

from __future__ import annotations

import logging
from functools import cache

from django.db import OperationalError, connection

from gallery.catalogue.sampling import among, pk_among
from gallery.models import DeletedImage, Image

INDEX = "image_visible_ids"  # migrations 0016 (PostgreSQL), 0017 and 0018
HIDDEN_INDEX = "image_hidden_ids"  # Image.Meta.indexes
COLUMNS = ("taken_at", "camera_model")  # what the index holds beside the id

logger = logging.getLogger(__name__)


def visible_among(ids: list[int], columns: tuple[str, ...] = ()) -> list[tuple]:
    """``(id, *columns)`` of the visible images among ``ids`` (any order); ``columns`` from
    :data:`COLUMNS`."""
    if not set(columns) <= set(COLUMNS):
        raise ValueError(f"the index holds {COLUMNS}, not {columns}")
    if not columns and (gone := _hidden_or_deleted(ids)) is not None:
        return [(pk,) for pk in dict.fromkeys(ids) if pk not in gone]
    select = f"SELECT {', '.join(('id', *columns))} FROM {Image._meta.db_table}"
    if connection.vendor == "postgresql":
        # Plain SQL, one array: the QuerySet's compile and its IN (subquery), planned as a join
        # of one index probe per id, cost 2.1-3.0 against 1.6-2.1 ms at a million images
        # (2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16).
        with connection.cursor() as cursor:
            cursor.execute(f"{select} WHERE NOT hidden AND id = ANY(%s)", [list(ids)])
            return cursor.fetchall()
    if connection.vendor == "sqlite":
        wanted = among(ids)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"{select} INDEXED BY {INDEX} WHERE NOT hidden AND id IN ({wanted.sql})", wanted.params)
                rows = cursor.fetchall()
        except OperationalError as exc:  # "no such index": not migrated, or a table rebuilt without it
            _say_once(str(exc))
        else:
            return _with_dates(rows, columns.index("taken_at") + 1) if "taken_at" in columns else rows
    return list(Image.objects.visible().filter(pk_among(ids)).order_by().values_list("pk", *columns))


def _hidden_or_deleted(ids: list[int]) -> set[int] | None:
    """Which of ``ids`` are hidden or deleted; None where the database cannot say (not migrated)."""
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT id FROM {Image._meta.db_table} WHERE hidden AND id = ANY(%(ids)s) "
            f"UNION ALL SELECT image_id FROM {DeletedImage._meta.db_table} WHERE image_id = ANY(%(ids)s)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, {"ids": list(ids)})
            return {pk for pk, in cursor.fetchall()}
    if connection.vendor != "sqlite":
        return None
    wanted = among(ids)
    sql = (
        f"WITH wanted AS ({wanted.sql}) "
        f"SELECT id FROM {Image._meta.db_table} INDEXED BY {HIDDEN_INDEX} WHERE hidden AND id IN wanted "
        f"UNION ALL SELECT image_id FROM {DeletedImage._meta.db_table} WHERE image_id IN wanted"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, wanted.params)
            return {pk for pk, in cursor.fetchall()}
    except OperationalError as exc:  # not migrated: no such index or table
        _say_once(str(exc))
        return None


@cache
def _say_once(error: str) -> None:
    """Once per process and error: every search and its facets would say it again."""
    logger.error("search reads visibility, dates and cameras from the rows, slowly: %s (run `manage.py migrate`)", error)


def _with_dates(rows: list[tuple], at: int) -> list[tuple]:
    """The rows with column ``at`` made aware as the ORM makes a SQLite datetime (the driver
    has parsed it: Django registers its converter for the column's declared type)."""
    convert = connection.ops.convert_datetimefield_value
    return [(*row[:at], convert(row[at], None, connection), *row[at + 1 :]) for row in rows]

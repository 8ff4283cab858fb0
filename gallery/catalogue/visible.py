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
which of its ids are hidden or deleted. The process keeps those ids (the hidden ones and the
tombstones, ``gallery.catalogue.tombstones``) and reads them again only when the number the
database changes with them (``VisibilityGeneration``) changed; a search reads that number with
the index version, in the statement it makes anyway (``gallery.engine.backend.search_view``):
at a million images 1.04 ms of a search on SQLite became ~0.06 (section 27; 2 AMD EPYC cores
with avx2 avx512f avx512_vnni avx512_bf16). Where more than
MAX_HELD are hidden or deleted, a search asks which of its ids are among them, from the index
of hidden ids and the tombstones.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from functools import cache

from django.db import OperationalError, connection

from gallery.catalogue.sampling import among, pk_among
from gallery.models import DeletedImage, Image, VisibilityGeneration

INDEX = "image_visible_ids"  # migrations 0016 (PostgreSQL), 0017 and 0018
HIDDEN_INDEX = "image_hidden_ids"  # Image.Meta.indexes
# The hidden and deleted ids a process keeps (a set: ~60 bytes an id); beyond, each search asks.
MAX_HELD = 100_000
COLUMNS = ("taken_at", "camera_model")  # what the index holds beside the id

_held: tuple[int, frozenset[int] | None] | None = None  # (generation, the ids left out as of it)

logger = logging.getLogger(__name__)


def visible_among(ids: list[int], columns: tuple[str, ...] = (), *, generation: int | None = None) -> list[tuple]:
    """``(id, *columns)`` of the visible images among ``ids`` (any order); ``columns`` from
    :data:`COLUMNS`. ``generation``: the visibility generation, when the caller read it (search
    reads it with the index version: ``gallery.engine.backend.search_view``)."""
    if not set(columns) <= set(COLUMNS):
        raise ValueError(f"the index holds {COLUMNS}, not {columns}")
    if not columns and (gone := _left_out(ids, generation)) is not None:
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


def _left_out(ids: list[int], generation: int | None = None) -> Collection[int] | None:
    """The hidden and deleted ids (those held, when ``generation``, or the one read now, is the
    one they were read at; else of ``ids``); None where the database cannot say (not migrated)."""
    global _held
    if connection.vendor not in ("sqlite", "postgresql"):
        return None
    held = _held
    try:
        if held is not None and generation is None:  # not read with the index: read it now
            generation = _read_generation()
        if held is None or generation != held[0]:
            with connection.cursor() as cursor:
                held = _read_left_out(cursor)
            if held is not None:
                _held = held
    except OperationalError as exc:  # SQLite, not migrated: no such table (PostgreSQL's are)
        _say_once(str(exc))
        return None
    if held is None or held[1] is None:  # a flushed table (tests), or too many to hold
        return _hidden_or_deleted(ids)
    return held[1]


def _read_generation() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT generation FROM {VisibilityGeneration._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row is not None else None


def _read_left_out(cursor) -> tuple[int, frozenset[int] | None] | None:
    """The generation and, as of it (one statement), the hidden and tombstoned ids: None for
    more than MAX_HELD; None without the generation's row (a flushed table)."""
    hidden = f"SELECT id FROM {Image._meta.db_table}{' INDEXED BY ' + HIDDEN_INDEX if connection.vendor == 'sqlite' else ''} WHERE hidden"
    cursor.execute(
        f"SELECT 0, generation FROM {VisibilityGeneration._meta.db_table} WHERE id = 1 "
        f"UNION ALL SELECT 1, id FROM ({hidden} LIMIT {MAX_HELD + 1}) h "
        f"UNION ALL SELECT 1, image_id FROM (SELECT image_id FROM {DeletedImage._meta.db_table} LIMIT {MAX_HELD + 1}) d"
    )
    rows = cursor.fetchall()
    generation = next((value for kind, value in rows if kind == 0), None)
    if generation is None:
        return None
    ids = frozenset(value for kind, value in rows if kind == 1)
    return generation, ids if len(ids) <= MAX_HELD else None


def _hidden_or_deleted(ids: list[int]) -> set[int] | None:
    """Which of ``ids`` are hidden or deleted, from the index of hidden ids and the tombstones."""
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


def forget() -> None:
    """Drop the ids held (tests: each test's database starts again)."""
    global _held
    _held = None


@cache
def _say_once(error: str) -> None:
    """Once per process and error: every search and its facets would say it again."""
    logger.error("search reads visibility, dates and cameras from the rows, slowly: %s (run `manage.py migrate`)", error)


def _with_dates(rows: list[tuple], at: int) -> list[tuple]:
    """The rows with column ``at`` made aware as the ORM makes a SQLite datetime: the driver
    has parsed it (Django registers its converter for the column's declared type) into a naive
    datetime in the connection's zone. ``replace`` directly: the ORM's converter, value by value,
    cost 0.42 ms for a search's 320 dates (2 AMD EPYC cores, avx2 avx512f avx512_vnni avx512_bf16;
    section 31 of docs/performance.md)."""
    zone = connection.timezone

    def aware(value):
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=zone)

    return [(*row[:at], aware(row[at]), *row[at + 1 :]) for row in rows]

"""Curator pins: for one text query, some images first (in the curator's order) and some never.

Search ranks as usual; :func:`apply_pins` then rewrites that ranking for the query, once, in
``gallery.search.search``: pages, the API and the ``search`` command all see the same result.
Queries match after :func:`normalise_query` (case and spaces), so " Red  Shoes " finds the pin
saved for "red shoes". Pins apply to text searches only: a search with an example image, a
"but not" text, or "more like this" is a different question than the one the curator answered.

A pinned image keeps its CLIP score when search ranked it, and has no score (``None``) when it
did not; hidden images are skipped (deleted ones leave the pin with their row), and excluded
images never appear.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cache

from django.db import connection, transaction

from gallery.catalogue import tombstones
from gallery.errors import InvalidInput
from gallery.models import MAX_QUERY_LENGTH, Image, PinnedImage, QueryPin


class PinnedRanking(list):
    """(image id, score or ``None``) pairs, best first, knowing which ids a curator pinned."""

    def __init__(self, pairs: Iterable[tuple[int, float | None]] = (), pinned: Iterable[int] = ()):
        super().__init__(pairs)
        self.pinned = frozenset(pinned)


def normalise_query(text: str) -> str:
    """The form a query is pinned and looked up under: case-folded, spaces collapsed."""
    return " ".join((text or "").split()).casefold()


def apply_pins(query_text: str, ranked_pairs: list[tuple[int, float]], *, generation: int | None = None) -> PinnedRanking:
    """``ranked_pairs`` (visible images, best first) with the pin of ``query_text`` applied:
    its visible pinned images first in the curator's order, then the rest without the pinned
    and excluded ones. Without a pin, the ranking unchanged. ``generation``: the visibility
    generation, when the caller read it (search reads it with the index version), by which the
    process keeps which queries have a pin."""
    pin = _pin_of(normalise_query(query_text), generation)
    if pin is None:
        return PinnedRanking(ranked_pairs)
    wanted = pin.pinned_ids()
    excluded = set(pin.excluded.values_list("pk", flat=True))
    visible = set(Image.objects.visible().filter(pk__in=wanted).values_list("pk", flat=True))
    pinned = [pk for pk in wanted if pk in visible and pk not in excluded]
    # Hits are (id, score) pairs or longer tuples (gallery.search adds what matched).
    by_id, on_top_ids = {hit[0]: hit for hit in ranked_pairs}, set(pinned)
    on_top = [by_id.get(pk, (pk, None)) for pk in pinned]
    rest = [hit for hit in ranked_pairs if hit[0] not in excluded and hit[0] not in on_top_ids]
    return PinnedRanking(on_top + rest, pinned=pinned)


def _pin_of(key: str, generation: int | None = None) -> QueryPin | None:
    """The pin saved for ``key`` (normalised), or None. Every plain text search wants to know,
    and most have none: with ``generation``, from the pinned queries the process keeps (read
    again when the generation changed: every pin made, renamed or removed changes it,
    ``gallery.catalogue.tombstones``), no query; without (a live engine such as Milvus reads no
    generation, nor does a search by words alone), one lookup by the unique column in plain
    SQL (0.25 ms of a search on PostgreSQL, a round trip; compiling it as a QuerySet cost ten
    times the lookup: 0.17 against 0.015 ms on SQLite; 2 AMD EPYC cores with avx2 avx512f
    avx512_vnni avx512_bf16)."""
    if not key:
        return None
    held = _held_pins(generation) if generation is not None else None
    if held is not None:
        pk = held.get(key)
    else:
        with connection.cursor() as cursor:
            cursor.execute(_sql()[0], [key])
            row = cursor.fetchone()
        pk = row[0] if row is not None else None
    return QueryPin(pk=pk, query=key) if pk is not None else None


@cache
def _sql() -> tuple[str, str]:
    """(one pin's id by its query, every pinned query and its pin's id up to one past MAX_HELD)."""
    quote = connection.ops.quote_name
    table, pk, query = quote(QueryPin._meta.db_table), quote(QueryPin._meta.pk.column), quote(QueryPin._meta.get_field("query").column)
    return f"SELECT {pk} FROM {table} WHERE {query} = %s", f"SELECT {pk}, {query} FROM {table} LIMIT {MAX_HELD + 1}"


MAX_HELD = 10_000  # pinned queries a process keeps (curated: a few hundred is many); beyond, each search asks
_lock = threading.Lock()
_held: tuple[int, dict[str, int] | None] | None = None  # (generation, {query: pin id} as of it)


def _held_pins(generation: int) -> dict[str, int] | None:
    """{pinned query: its pin's id} as of ``generation`` or later; None for more than MAX_HELD,
    or where the database would not say when they change (its triggers are missing: a table
    rebuilt, migrate not run since)."""
    global _held
    held = _held
    if held is None or held[0] != generation:
        with _lock:
            held = _held
            if held is None or held[0] != generation:  # not read by another thread meanwhile
                with connection.cursor() as cursor:
                    cursor.execute(_sql()[1])
                    rows = cursor.fetchall()
                watched = tombstones.watches_pins()
                # Read after the generation: at least as new as it (a later change brings a new one).
                held = _held = (generation, {query: pk for pk, query in rows} if watched and len(rows) <= MAX_HELD else None)
    return held[1]


def forget() -> None:
    """Drop the pinned queries held (tests: each test's database starts again)."""
    global _held
    _held = None


# --- Services: the admin and the API change pins through these ------------------------------


def pin_save(
    *,
    query: str,
    pinned: list[int] | None = None,
    excluded: list[int] | None = None,
    user=None,
    pin: QueryPin | None = None,
) -> QueryPin:
    """Create a pin (``pin`` is ``None``) or change one. ``None`` leaves a list as it is; a list
    replaces it (pinned in that order)."""
    key = clean_query(query) if query is not None else pin.query
    pinned_list = list(dict.fromkeys(pinned)) if pinned is not None else None  # first mention wins
    excluded_set = set(excluded) if excluded is not None else None
    check_lists(
        pinned_list if pinned_list is not None else (pin.pinned_ids() if pin else []),
        excluded_set if excluded_set is not None else (set(pin.excluded.values_list("pk", flat=True)) if pin else set()),
    )
    if QueryPin.objects.filter(query=key).exclude(pk=getattr(pin, "pk", None)).exists():
        raise InvalidInput(f"There is already a pin for “{key}”; change that one.")
    with transaction.atomic():
        if pin is None:
            pin = QueryPin.objects.create(query=key, created_by=user if user and user.is_authenticated else None)
        else:
            pin.query = key
            pin.save()  # updated_at
        if pinned_list is not None:
            pin.placements.all().delete()
            PinnedImage.objects.bulk_create(
                PinnedImage(pin=pin, image_id=pk, position=n) for n, pk in enumerate(pinned_list)
            )
        if excluded_set is not None:
            pin.excluded.set(excluded_set)
    return pin


def clean_query(text: str) -> str:
    key = normalise_query(text)
    if not key:
        raise InvalidInput("Give the query to pin images for.")
    if len(key) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"The query is too long ({len(key)} characters; at most {MAX_QUERY_LENGTH}).")
    return key


def check_lists(pinned: list[int], excluded: set[int]) -> None:
    """One image cannot be both pinned and excluded, and every image must exist."""
    both = sorted(set(pinned) & excluded)
    if both:
        raise InvalidInput(f"Images {', '.join(map(str, both))} are both pinned and excluded; choose one.")
    named = set(pinned) | excluded
    missing = sorted(named - set(Image.objects.filter(pk__in=named).values_list("pk", flat=True)))
    if missing:
        raise InvalidInput(f"There are no images {', '.join(map(str, missing))}.")

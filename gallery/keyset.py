"""Keyset pages for the gallery grid: newest first, each page found from the row that ends the
page before it, not by counting rows (OFFSET) or the whole gallery (a page count).

A cursor names one image by its sort key, ``<uploaded_at in microseconds since 1970>-<id>``;
"older than" a cursor is an index range scan on ``(uploaded_at, id)`` (migration 0009) that
stops after one page, so the millionth image costs what the first does. There is no "page N of
M": the grid links to the newest page, the newer one and the older one. The REST API pages its
list the same way with DRF's ``CursorPagination`` (``gallery.api.pagination``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.db.models import QuerySet

from gallery.errors import GalleryError

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CURSOR = re.compile(r"(-?\d{1,20})-(\d{1,19})")


class BadCursor(GalleryError):
    status = 404


@dataclass(frozen=True)
class KeysetPage:
    object_list: list
    newer: str | None  # cursor for the page of newer images; None on the newest page
    older: str | None  # cursor for the page of older images; None on the oldest page

    @property
    def has_other_pages(self) -> bool:
        return bool(self.newer or self.older)


def cursor_of(image) -> str:
    return f"{(image.uploaded_at - _EPOCH) // timedelta(microseconds=1)}-{image.pk}"


def parse_cursor(cursor: str) -> tuple[datetime, int]:
    match = _CURSOR.fullmatch(cursor or "")
    if match is None:
        raise BadCursor(f"There is no page at {str(cursor)[:40]!r} of this gallery.")
    try:
        return _EPOCH + timedelta(microseconds=int(match[1])), int(match[2])
    except OverflowError:
        raise BadCursor(f"There is no page at {str(cursor)[:40]!r} of this gallery.") from None


def keyset_page(items: QuerySet, *, before: str = "", after: str = "", size: int) -> KeysetPage:
    """One page of ``items`` newest first: the newest, those older than ``before``, or those
    newer than ``after`` (still shown newest first). One query, ``size + 1`` rows at most."""
    if after:
        at, pk = parse_cursor(after)
        # Written as a range and an exclusion (not an OR of two ranges) so the database walks
        # the index from the cursor and stops after one page.
        rows = list(items.filter(uploaded_at__gte=at).exclude(uploaded_at=at, pk__lte=pk).order_by("uploaded_at", "pk")[: size + 1])
        more_newer, rows = len(rows) > size, rows[:size][::-1]
        return KeysetPage(rows, newer=cursor_of(rows[0]) if more_newer else None, older=cursor_of(rows[-1]) if rows else None)
    if before:
        at, pk = parse_cursor(before)
        items = items.filter(uploaded_at__lte=at).exclude(uploaded_at=at, pk__gte=pk)
    rows = list(items.order_by("-uploaded_at", "-pk")[: size + 1])
    more_older, rows = len(rows) > size, rows[:size]
    newer = cursor_of(rows[0]) if before and rows else None
    return KeysetPage(rows, newer=newer, older=cursor_of(rows[-1]) if more_older else None)

"""Tombstones: the ids of deleted images, written by the database on every deletion.

An Annoy version keeps the vectors of images deleted after it read them, until the next build,
and a rollback can bring back an older one (``gallery.indexing.index_rollback``). Search must
leave those ids out. Asking the table which of a search's ~320 ids still exist probes an index of
the whole gallery, which costs twice as much at a million images as at ten thousand (1.04 against
0.45 ms on SQLite; docs/performance.md, section 27); asking which are tombstoned (or hidden) probes
a few rows. So every deletion leaves a :class:`gallery.models.DeletedImage` row, written by a
trigger in the database (the admin, the API, duplicate clean-up, a bulk or raw SQL delete alike),
and ``index_prune`` removes those older than every kept version's snapshot (:func:`prune`).

SQLite drops a table's triggers when a migration rebuilds the table, so the trigger is created
again after every ``migrate`` (:func:`ensure_trigger`, from ``GalleryConfig.ready``'s
``post_migrate`` listener); on PostgreSQL it is replaced in place. Image ids are never reused
(SQLite's AUTOINCREMENT, PostgreSQL's sequences), so a tombstone never hides a newer image.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from django.db import connections

from gallery.models import DeletedImage

TRIGGER = "image_tombstones"
_TABLE, _IMAGES = "gallery_deletedimage", "gallery_image"

_SQLITE = f"""
CREATE TRIGGER IF NOT EXISTS {TRIGGER} AFTER DELETE ON {_IMAGES}
BEGIN
    INSERT OR IGNORE INTO {_TABLE} (image_id, deleted_at) VALUES (OLD.id, strftime('%Y-%m-%d %H:%M:%f', 'now'));
END
"""
# One statement-level trigger: a bulk delete of many rows writes its tombstones in one INSERT.
_POSTGRES = [
    f"""
    CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {_TABLE} (image_id, deleted_at) SELECT id, now() FROM gone ON CONFLICT (image_id) DO NOTHING;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE OR REPLACE TRIGGER {TRIGGER} AFTER DELETE ON {_IMAGES}
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()
    """,
]


def ensure_trigger(using: str = "default") -> bool:
    """Create the trigger where it is missing; False when the tables are not migrated yet."""
    connection = connections[using]
    if not {_TABLE, _IMAGES} <= set(connection.introspection.table_names()):
        return False
    statements = {"sqlite": [_SQLITE], "postgresql": _POSTGRES}.get(connection.vendor, [])
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return bool(statements)


def drop_trigger(using: str = "default") -> None:
    connection = connections[using]
    statements = {
        "sqlite": [f"DROP TRIGGER IF EXISTS {TRIGGER}"],
        "postgresql": [f"DROP TRIGGER IF EXISTS {TRIGGER} ON {_IMAGES}", f"DROP FUNCTION IF EXISTS {TRIGGER}()"],
    }.get(connection.vendor, [])
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def has_trigger(using: str = "default") -> bool:
    """Whether the database holds the trigger (tests; a SQLite table rebuild drops it)."""
    connection = connections[using]
    query = {
        "sqlite": ("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = %s", [TRIGGER]),
        "postgresql": ("SELECT 1 FROM pg_trigger WHERE tgname = %s", [TRIGGER]),
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(*query)
        return cursor.fetchone() is not None


def record_missing_ids(image_model, deleted_model, *, at: datetime) -> int:
    """Tombstones for the ids under the largest that no image holds: images deleted before the
    trigger existed, which a kept index version may still hold (the migration that adds the
    trigger). Returns how many."""
    ids = np.fromiter(image_model.objects.order_by().values_list("pk", flat=True).iterator(chunk_size=50_000), dtype=np.int64)
    if not len(ids):
        return 0
    missing = np.setdiff1d(np.arange(1, int(ids.max()) + 1, dtype=np.int64), ids, assume_unique=True)
    deleted_model.objects.bulk_create(
        (deleted_model(image_id=int(pk), deleted_at=at) for pk in missing.tolist()), batch_size=5000, ignore_conflicts=True
    )
    return len(missing)


def prune(before: datetime) -> int:
    """Drop the tombstones written before ``before``: the snapshot of the oldest kept index
    version (what a version read before an image's deletion holds). Returns how many."""

    return DeletedImage.objects.filter(deleted_at__lt=before).delete()[0]

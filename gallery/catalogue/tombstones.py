"""Tombstones and the visibility generation: what the database records so that a search can tell
which of its ids to leave out without reading an index of the whole gallery.

An Annoy version keeps the vectors of images deleted after it read them, until the next build,
and a rollback can bring back an older one (``gallery.indexing.index_rollback``). Search must
leave those ids out, and the hidden ones. Asking the table which of a search's ~320 ids still
exist and are shown probes an index of the whole gallery, which costs twice as much at a million
images as at ten thousand (1.04 against 0.45 ms on SQLite, 2 AMD EPYC cores with avx2 avx512f
avx512_vnni avx512_bf16; docs/performance.md, section 27). So
the database records what is left out, whichever way it came (the admin, the API, duplicate
clean-up, a bulk or raw SQL statement alike), in triggers:

- every deletion leaves a :class:`gallery.models.DeletedImage` row (a tombstone), which
  ``index_prune`` removes once every kept version read its vectors after it (:func:`prune`);
- every deletion, every change of ``hidden`` and every image inserted hidden gives
  :class:`gallery.models.VisibilityGeneration` a new random number: a process keeps the hidden
  and tombstoned ids (``gallery.catalogue.visible``) and reads them again only when it changed
  (random, not counted up: a number a rolled-back transaction had set may come back, a random
  one does not);
- so does every pin made, renamed or removed (``QueryPin``): a process keeps which queries
  have a pin (``gallery.search.pins``) by the same number, so a text search on Annoy (which
  reads the number with the index version) without a pin asks the database nothing about pins.

SQLite drops a table's triggers when a migration rebuilds the table, so they are created again
after every ``migrate`` (:func:`ensure_triggers`, from ``GalleryConfig.ready``'s ``post_migrate``
listener); on PostgreSQL they are replaced in place. Image ids are never reused (SQLite's
AUTOINCREMENT, PostgreSQL's sequences), so a tombstone never hides a newer image.
"""

from __future__ import annotations

from datetime import datetime
from itertools import chain

from django.db import connections, transaction

from gallery.models import DeletedImage

TRIGGER = "image_tombstones"
_TABLE, _IMAGES, _GENERATION = "gallery_deletedimage", "gallery_image", "gallery_visibilitygeneration"
_PINS = "gallery_querypin"
_PIN_EVENTS = {"query_pin_added": "INSERT", "query_pin_removed": "DELETE", "query_pin_renamed": "UPDATE OF query"}
# name -> the table it watches
TRIGGERS = {TRIGGER: _IMAGES, "image_hidden_changed": _IMAGES, "image_inserted_hidden": _IMAGES, **dict.fromkeys(_PIN_EVENTS, _PINS)}
_NEW_SQLITE_GENERATION = f"UPDATE {_GENERATION} SET generation = random();"

_SQLITE = [
    f"""
    CREATE TRIGGER IF NOT EXISTS {TRIGGER} AFTER DELETE ON {_IMAGES}
    BEGIN
        INSERT OR IGNORE INTO {_TABLE} (image_id, deleted_at) VALUES (OLD.id, strftime('%Y-%m-%d %H:%M:%f', 'now'));
        {_NEW_SQLITE_GENERATION}
    END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS image_hidden_changed AFTER UPDATE OF hidden ON {_IMAGES}
    WHEN OLD.hidden IS NOT NEW.hidden
    BEGIN {_NEW_SQLITE_GENERATION} END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS image_inserted_hidden AFTER INSERT ON {_IMAGES} WHEN NEW.hidden
    BEGIN {_NEW_SQLITE_GENERATION} END
    """,
    *(
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {_PINS}"
        + (" WHEN OLD.query IS NOT NEW.query" if event.startswith("UPDATE") else "") + f" BEGIN {_NEW_SQLITE_GENERATION} END"
        for name, event in _PIN_EVENTS.items()
    ),
    f"INSERT OR IGNORE INTO {_GENERATION} (id, generation) VALUES (1, random())",
]
# A bulk delete writes its tombstones in one INSERT (a statement-level trigger). Hides and hidden
# inserts fire row by row, and only where ``hidden`` changed (the WHEN clause costs the other
# rows nothing; every ``Model.save()`` writes ``hidden`` again, and a statement-level trigger
# would copy every row an UPDATE touches, vectors and all, to compare them); the number changes
# once per statement (a transaction-local mark of the statement): every row of a bulk hide
# updating the one row again would pile up versions of it, each update scanning them all.
_NEW_POSTGRES_GENERATION = f"UPDATE {_GENERATION} SET generation = (random() * 9.2e18)::bigint;"
_ONCE_PER_STATEMENT = "txid_current()::text || '@' || statement_timestamp()::text"
_POSTGRES = [
    f"""
    CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {_TABLE} (image_id, deleted_at) SELECT id, now() FROM gone ON CONFLICT (image_id) DO NOTHING;
        IF FOUND THEN {_NEW_POSTGRES_GENERATION} END IF;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE OR REPLACE TRIGGER {TRIGGER} AFTER DELETE ON {_IMAGES}
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()
    """,
    f"""
    CREATE OR REPLACE FUNCTION image_visibility_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('gallery.visibility_changed', true) IS DISTINCT FROM {_ONCE_PER_STATEMENT} THEN
            PERFORM set_config('gallery.visibility_changed', {_ONCE_PER_STATEMENT}, true);
            {_NEW_POSTGRES_GENERATION}
        END IF;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE OR REPLACE TRIGGER image_hidden_changed AFTER UPDATE OF hidden ON {_IMAGES}
    FOR EACH ROW WHEN (OLD.hidden IS DISTINCT FROM NEW.hidden) EXECUTE FUNCTION image_visibility_changed()
    """,
    f"""
    CREATE OR REPLACE TRIGGER image_inserted_hidden AFTER INSERT ON {_IMAGES}
    FOR EACH ROW WHEN (NEW.hidden) EXECUTE FUNCTION image_visibility_changed()
    """,
    # Pins change a few at a time, by curators: inserts and deletes once per statement; a rename
    # row by row where the query changed (saving a pin writes its query again, unchanged, and an
    # ``UPDATE OF query`` statement trigger fires for any statement that sets the column).
    f"""
    CREATE OR REPLACE FUNCTION query_pins_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN {_NEW_POSTGRES_GENERATION} RETURN NULL; END
    $$
    """,
    *(
        f"CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {_PINS} "
        + ("FOR EACH ROW WHEN (OLD.query IS DISTINCT FROM NEW.query)" if event.startswith("UPDATE") else "FOR EACH STATEMENT")
        + " EXECUTE FUNCTION query_pins_changed()"
        for name, event in _PIN_EVENTS.items()
    ),
    f"INSERT INTO {_GENERATION} (id, generation) VALUES (1, (random() * 9.2e18)::bigint) ON CONFLICT (id) DO NOTHING",
]


def ensure_triggers(using: str = "default") -> bool:
    """Create the triggers as this module writes them (replacing older ones: SQLite has no
    ``CREATE OR REPLACE TRIGGER``, so it drops them first), and the generation's row; False when
    the tables are not migrated yet."""
    connection = connections[using]
    if not {_TABLE, _IMAGES, _GENERATION, _PINS} <= set(connection.introspection.table_names()):
        return False
    statements = {"sqlite": _SQLITE, "postgresql": _POSTGRES}.get(connection.vendor, [])
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for name in TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in statements:
            cursor.execute(statement)
    return bool(statements)


def forget_all(using: str = "default") -> None:
    """Drop every tombstone: after a flush emptied the database (no index version is left to
    hold a deleted image), whose deletes of the images wrote tombstones on SQLite."""
    DeletedImage.objects.using(using).all().delete()


def drop_triggers(using: str = "default", *, pins_only: bool = False) -> None:
    """Drop the triggers (and PostgreSQL's functions); ``pins_only``: those of the pins alone
    (migration 0020's, reversed)."""
    connection = connections[using]
    names = [name for name in TRIGGERS if name in _PIN_EVENTS or not pins_only]
    functions = ["query_pins_changed"] + ([] if pins_only else [TRIGGER, "image_visibility_changed"])
    if connection.vendor == "sqlite":
        statements = [f"DROP TRIGGER IF EXISTS {name}" for name in names]
    elif connection.vendor == "postgresql":
        statements = [f"DROP TRIGGER IF EXISTS {name} ON {TRIGGERS[name]}" for name in names] + [
            f"DROP FUNCTION IF EXISTS {name}()" for name in functions
        ]
    else:
        statements = []
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def watches_pins(using: str = "default") -> bool:
    """Whether every pin made, renamed or removed changes the generation: its triggers exist
    (and, on PostgreSQL, are enabled)."""
    return set(_PIN_EVENTS) <= triggers(using)


def triggers(using: str = "default") -> set[str]:
    """The triggers of these the database holds on their tables (a SQLite table rebuild drops
    them); on PostgreSQL the enabled ones."""
    connection = connections[using]
    query = {
        "sqlite": "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'",
        "postgresql": "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(query)
        return {name for name, table in cursor.fetchall() if TRIGGERS.get(name) == table}


def record_missing_ids(image_model, deleted_model, *, at: datetime, using: str = "default", batch: int = 50_000) -> int:
    """Tombstones for the ids that no image holds, up to the last one the database handed out
    (its sequence: an image deleted with the largest id counts too): images deleted before the
    trigger existed, which a kept index version may still hold (the migration that adds the
    trigger). Read in id order a batch at a time. Returns how many."""
    last = _last_id_handed_out(using)
    written, previous = 0, 0
    ids = image_model.objects.using(using).order_by("pk").values_list("pk", flat=True).iterator(chunk_size=batch)
    pending: list[int] = []
    for pk in chain(ids, [last + 1]):  # the sentinel closes the last gap
        if pk > previous + 1:
            pending.extend(range(previous + 1, min(pk, last + 1)))
        previous = max(previous, pk)
        if len(pending) >= batch:
            written += _write_tombstones(deleted_model, pending, at=at, using=using)
            pending = []
    return written + _write_tombstones(deleted_model, pending, at=at, using=using)


def _write_tombstones(deleted_model, ids: list[int], *, at: datetime, using: str) -> int:
    deleted_model.objects.using(using).bulk_create(
        (deleted_model(image_id=pk, deleted_at=at) for pk in ids), batch_size=5000, ignore_conflicts=True
    )
    return len(ids)


def _last_id_handed_out(using: str) -> int:
    """The largest image id the database has handed out (0 for none)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(id) FROM {_IMAGES}")
        largest = cursor.fetchone()[0] or 0
        if connection.vendor == "sqlite":
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [_IMAGES])
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT last_value FROM pg_sequences WHERE schemaname || '.' || sequencename = pg_get_serial_sequence(%s, 'id')",
                [_IMAGES],
            )
        else:
            return largest
        row = cursor.fetchone()
        return max(largest, row[0] or 0) if row else largest


def prune(before: datetime) -> int:
    """Drop the tombstones written before ``before``: the snapshot of the oldest kept index
    version (what a version read before an image's deletion holds). Returns how many."""

    return DeletedImage.objects.filter(deleted_at__lt=before).delete()[0]

"""Tombstones (gallery.catalogue.tombstones): every deletion leaves one, written by the database;
search leaves tombstoned and hidden ids out without reading an index of the whole gallery; a
rebuilt table gets its trigger back; the migration covers images deleted before it; pruning
keeps what a kept index version may hold."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from gallery import search
from gallery.catalogue import curation, tombstones
from gallery.indexing import index_prune
from gallery.models import DeletedImage, Image, IndexVersion, VisibilityGeneration


def tombstoned() -> set[int]:
    return set(DeletedImage.objects.values_list("image_id", flat=True))


def found_ids() -> list[int]:
    return [hit.image.pk for hit in search.search(search.text_query("photo"))]


def test_every_way_of_deleting_leaves_a_tombstone_and_search_leaves_the_image_out(indexed_gallery):
    """The index still holds all 20 vectors; the results are the images neither deleted (by
    the curation service, a bulk QuerySet delete, plain SQL) nor hidden, and their count says so."""
    ids = [image.pk for image in indexed_gallery]
    assert sorted(found_ids()) == ids and tombstoned() == set()
    curation.image_delete(image=indexed_gallery[0])
    Image.objects.filter(pk__in=ids[1:3]).delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM gallery_image WHERE id = %s", [ids[3]])
    curation.images_set_hidden(images=Image.objects.filter(pk=ids[4]), hidden=True)
    assert tombstoned() == set(ids[:4])
    assert DeletedImage.objects.filter(deleted_at__gte=timezone.now() - timedelta(minutes=5)).count() == 4
    results = search.search(search.text_query("photo"))
    assert sorted(hit.image.pk for hit in results) == ids[5:] and len(results) == 15
    curation.images_set_hidden(images=Image.objects.filter(pk=ids[4]), hidden=False)
    assert sorted(found_ids()) == ids[4:]


def test_dropped_triggers_come_back_with_every_migrate(db):
    """SQLite drops a table's triggers when a migration rebuilds the table: every migrate
    creates them again (on PostgreSQL they are replaced in place)."""
    assert tombstones.triggers() == set(tombstones.TRIGGERS)
    tombstones.drop_triggers()
    assert tombstones.triggers() == set()
    call_command("migrate", verbosity=0)
    assert tombstones.triggers() == set(tombstones.TRIGGERS)


def test_the_migration_tombstones_the_ids_deleted_before_the_trigger(db, upload):
    """What a kept index version may hold of images deleted before the trigger existed: every
    id that no image holds, up to the last the database handed out (the newest image deleted
    too), read a batch at a time."""
    ids = [upload(seed)[0].pk for seed in range(5)]
    tombstones.drop_triggers()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM gallery_image WHERE id IN (%s, %s, %s)", [ids[1], ids[2], ids[4]])
    assert tombstoned() == set()
    count = tombstones.record_missing_ids(Image, DeletedImage, at=timezone.now(), batch=2)
    # Ids under the first of this test are missing too (other tests' rows, or never used).
    expected = set(range(1, ids[-1] + 1)) - {ids[0], ids[3]}
    assert tombstoned() == expected and count == len(expected) and ids[4] in expected
    assert tombstones.record_missing_ids(Image, DeletedImage, at=timezone.now()) == len(expected)  # again: no error, no duplicate
    assert tombstoned() == expected


def test_pruning_keeps_the_tombstones_a_kept_version_may_hold(indexed_gallery):
    """A tombstone goes once every kept version read its vectors after the deletion (less the
    grace for clocks); one deleted after the oldest kept version's reading stays."""
    read_at = IndexVersion.objects.get(is_current=True).snapshot_at
    ages = {1: timedelta(hours=-2), 2: timedelta(minutes=-10), 3: timedelta(minutes=1)}
    DeletedImage.objects.bulk_create(DeletedImage(image_id=10**9 + n, deleted_at=read_at + age) for n, age in ages.items())
    index_prune(grace_seconds=3600)
    assert tombstoned() == {10**9 + 2, 10**9 + 3}
    index_prune(grace_seconds=0)
    assert tombstoned() == {10**9 + 3}
    IndexVersion.objects.filter(is_current=True).update(snapshot_at=None)  # a version read at an unknown time
    DeletedImage.objects.filter(image_id=10**9 + 3).update(deleted_at=read_at - timedelta(days=30))
    index_prune(grace_seconds=0)
    assert tombstoned() == {10**9 + 3}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement-level trigger on PostgreSQL")
def test_a_bulk_delete_on_postgresql_writes_its_tombstones_in_one_statement(indexed_gallery):
    ids = [image.pk for image in indexed_gallery]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM gallery_image WHERE id = ANY(%s)", [ids[:10]])
        cursor.execute("SELECT tgtype & 1 FROM pg_trigger WHERE tgname = %s", [tombstones.TRIGGER])
        assert cursor.fetchone()[0] == 0  # not FOR EACH ROW
    assert tombstoned() == set(ids[:10]) and sorted(found_ids()) == ids[10:]


def test_the_generation_changes_with_what_search_leaves_out_and_with_nothing_else(indexed_gallery):
    """A process reads the hidden and deleted ids again only when the generation changed: on a
    hide, a show, a hidden insert, a deletion; not on the writes every save and index run make."""
    def generation():
        return VisibilityGeneration.objects.get(pk=1).generation

    image, before = indexed_gallery[0], generation()
    image.title = "Renamed"
    image.save()  # writes hidden again, unchanged
    Image.objects.filter(pk__in=[one.pk for one in indexed_gallery]).update(status=Image.Status.PENDING, hidden=False)
    assert generation() == before
    seen = {before}
    curation.images_set_hidden(images=Image.objects.filter(pk=image.pk), hidden=True)
    assert generation() not in seen
    seen.add(generation())
    curation.images_set_hidden(images=Image.objects.filter(pk=image.pk), hidden=False)
    assert generation() not in seen
    seen.add(generation())
    copy = Image.objects.get(pk=indexed_gallery[1].pk)
    copy.pk, copy.sha256, copy.hidden = None, "f" * 64, True
    copy.save()  # inserted hidden: its words could find it
    assert generation() not in seen
    seen.add(generation())
    Image.objects.filter(pk=copy.pk).delete()
    assert generation() not in seen


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row-level triggers with a mark per statement on PostgreSQL")
def test_a_bulk_hide_changes_the_generation_once_per_statement(indexed_gallery):
    """Each row of a bulk hide fires the trigger; the number changes once per statement (a
    transaction-local mark), not once per row, which would pile up versions of its one row."""
    ids = [image.pk for image in indexed_gallery]
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'gallery_visibilitygeneration'")
        before = cursor.fetchone()[0]
        cursor.execute("UPDATE gallery_image SET hidden = true WHERE id = ANY(%s)", [ids[:15]])
        cursor.execute("UPDATE gallery_image SET hidden = false WHERE id = ANY(%s)", [ids[:5]])
        cursor.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'gallery_visibilitygeneration'")
        assert cursor.fetchone()[0] - before == 2  # two statements, 20 rows
    assert sorted(found_ids()) == [*ids[:5], *ids[15:]]


def test_a_flush_leaves_no_tombstones_and_a_migrate_keeps_them(db, upload):
    """A flush empties every table, on SQLite the images perhaps after the tombstones (their
    deletes then write one each): the listener that runs after it (post_migrate without a plan)
    drops what is left. After a migrate the tombstones stay: an index version may hold them."""
    from django.core.management.sql import emit_post_migrate_signal

    image, _ = upload(0)
    pk = image.pk
    image.delete()
    call_command("migrate", verbosity=0)
    assert tombstoned() == {pk}
    emit_post_migrate_signal(0, False, "default")  # what `flush` sends when it is done
    assert tombstoned() == set() and VisibilityGeneration.objects.count() == 1

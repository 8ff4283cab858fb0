"""Triggers that change the visibility generation with every pin made, renamed or removed: a
process keeps which queries have a pin by that number (``gallery.search.pins``), so a text
search without one asks the database nothing about pins. Every ``migrate`` makes the
triggers anyway (``GalleryConfig``'s ``post_migrate`` listener); this migration makes sure an
upgrade runs it. Until it has, search asks about pins each time, as before."""

from django.db import migrations

from gallery.catalogue import tombstones


def forwards(apps, schema_editor):
    tombstones.ensure_triggers(schema_editor.connection.alias)


def backwards(apps, schema_editor):
    tombstones.drop_triggers(schema_editor.connection.alias, pins_only=True)


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0019_tombstones"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]

"""Tombstones for deleted images, the visibility generation, and an index of the hidden ids:
which of a search's ~320 ranked ids are hidden or deleted is known without probing an index of
the whole gallery (``gallery.catalogue.tombstones``, ``gallery.catalogue.visible``).

The triggers come first, then a tombstone for every id up to the last one handed out that no
image holds (images deleted before, which a kept index version may still hold). At a million
images: 3.6-9.1 s on SQLite, 1.0 s on PostgreSQL, where writes wait for the index of hidden ids
(2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16).
"""

from django.db import migrations, models
from django.utils import timezone

from gallery.catalogue import tombstones


def forwards(apps, schema_editor):
    tombstones.ensure_triggers(schema_editor.connection.alias)
    tombstones.record_missing_ids(
        apps.get_model("gallery", "Image"), apps.get_model("gallery", "DeletedImage"), at=timezone.now(),
        using=schema_editor.connection.alias,
    )


def backwards(apps, schema_editor):
    tombstones.drop_triggers(schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0018_visible_rows_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeletedImage",
            fields=[
                ("image_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("deleted_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "deleted image",
            },
        ),
        migrations.CreateModel(
            name="VisibilityGeneration",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("generation", models.BigIntegerField()),
            ],
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(condition=models.Q(("hidden", True)), fields=["id", "hidden"], name="image_hidden_ids"),
        ),
        migrations.RunPython(forwards, backwards),
    ]

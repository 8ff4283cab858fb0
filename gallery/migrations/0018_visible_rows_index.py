"""The index of visible ids holds the camera too, and on SQLite the date: what a search's facets
and its sort by date taken read of its ~320 results (``gallery.catalogue.visible``), without a
row each. PostgreSQL's held the date since 0016. Rebuilding it at a million images: a few
seconds."""

from django.db import migrations

from gallery.migrations._operations import RunSQLOn

INDEX = "image_visible_ids"


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0017_visible_ids_index_sqlite"),
    ]

    operations = [
        RunSQLOn(
            "sqlite",
            [
                f"DROP INDEX IF EXISTS {INDEX}",
                f"CREATE INDEX {INDEX} ON gallery_image (id, hidden, taken_at, camera_model) WHERE NOT hidden",
            ],
            [f"DROP INDEX IF EXISTS {INDEX}", f"CREATE INDEX {INDEX} ON gallery_image (id, hidden) WHERE NOT hidden"],
        ),
        RunSQLOn(
            "postgresql",
            [
                f"DROP INDEX IF EXISTS {INDEX}",
                f"CREATE INDEX {INDEX} ON gallery_image (id) INCLUDE (taken_at, camera_model) WHERE NOT hidden",
            ],
            [f"DROP INDEX IF EXISTS {INDEX}", f"CREATE INDEX {INDEX} ON gallery_image (id) INCLUDE (taken_at) WHERE NOT hidden"],
        ),
    ]

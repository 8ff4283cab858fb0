"""Drop the single-column indexes on ``uploaded_at`` and ``status``: ``image_newest_first``
(uploaded_at, id) and ``image_status_counts`` (status, hidden, embedded_at) lead with those
columns and serve every query the single ones did, so they only cost each write (and, with two
indexes to choose from, PostgreSQL sometimes walked the narrower one and sorted again).

The indexes are dropped by name rather than by ``AlterField``, which on SQLite copies the whole
table (a million rows with their vectors) to drop an index."""

import re

from django.db import migrations, models

# Django's names for db_index=True on these two columns (PostgreSQL adds a "_like" one for text).
SINGLE_COLUMN = re.compile(r"gallery_image_(uploaded_at|status)_[0-9a-f]{8}(_like)?")


def drop_single_column_indexes(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "gallery_image")
    for name, info in constraints.items():
        if info["index"] and not info["unique"] and not info["primary_key"] and SINGLE_COLUMN.fullmatch(name):
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_single_column_indexes(apps, schema_editor):
    image = apps.get_model("gallery", "Image")
    for field_name in ("uploaded_at", "status"):
        old = image._meta.get_field(field_name).clone()
        old.db_index = True
        old.set_attributes_from_name(field_name)
        old.model = image
        for sql in schema_editor._field_indexes_sql(image, old):
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("gallery", "0012_text_in_pictures"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="image",
                    name="status",
                    field=models.CharField(choices=[("pending", "pending"), ("indexed", "indexed"), ("failed", "failed")], default="pending", max_length=16, verbose_name="status"),
                ),
                migrations.AlterField(
                    model_name="image",
                    name="uploaded_at",
                    field=models.DateTimeField(auto_now_add=True, verbose_name="uploaded at"),
                ),
            ],
            database_operations=[migrations.RunPython(drop_single_column_indexes, create_single_column_indexes)],
        ),
    ]

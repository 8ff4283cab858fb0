"""PostgreSQL answers search's visibility check from a small index (gallery.search).

Every search asks which of its ~320 ranked ids are still visible (and, to sort by date, when
they were taken): 320 rows read by primary key. Read from the table, that is 320 heap pages
scattered over a large file, which a million-image gallery cannot keep cached: 18.8 ms per search
with the pages cold, 4.1 ms warm (2 AMD EPYC cores with AVX-512). This partial index holds the
visible ids and their dates only (touched by every search, so it stays cached): an index-only
scan, 2.2 ms (3.0 ms with the dates; docs/performance.md section 22). Index-only scans need the
visibility map that autovacuum keeps. SQLite looks rows up by rowid whatever index exists: its index
(migration 0017) is named in the query.
"""

from django.db import migrations

from gallery.migrations._operations import RunSQLOn

INDEX = "image_visible_ids"


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0015_stored_keyword_document"),
    ]

    operations = [
        RunSQLOn(
            "postgresql",
            [f"CREATE INDEX {INDEX} ON gallery_image (id) INCLUDE (taken_at) WHERE NOT hidden"],
            [f"DROP INDEX IF EXISTS {INDEX}"],
        ),
    ]

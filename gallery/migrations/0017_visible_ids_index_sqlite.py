"""SQLite answers search's visibility check from a small index too (gallery.search).

Every search asks which of its ~320 ranked ids are still visible. SQLite finds a row by its
rowid whatever index exists, and a row holds its 2 KB vector: 320 rows scattered over a
4.5 GB file at a million images, 0.8-4.6 ms per search depending on what the page cache
kept, against 0.45 ms from this index (2 AMD EPYC cores with
avx2 avx512f avx512_vnni avx512_bf16; docs/performance.md, section 23).
Search names it (``INDEXED BY``), since SQLite's planner would still go by rowid; ``hidden``
is in it so that the plan is covering by SQLite's own account. PostgreSQL has its own since
migration 0016.
"""

from django.db import migrations

from gallery.migrations._operations import RunSQLOn

INDEX = "image_visible_ids"


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0016_visible_ids_index"),
    ]

    operations = [
        RunSQLOn(
            "sqlite",
            [f"CREATE INDEX {INDEX} ON gallery_image (id, hidden) WHERE NOT hidden"],
            [f"DROP INDEX IF EXISTS {INDEX}"],
        ),
    ]

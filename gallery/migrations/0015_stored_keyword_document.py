"""PostgreSQL keeps each image's full-text document in a stored column (gallery.catalogue.keywords).

Ranking with ``ts_rank`` needs the document of every match, and a GIN index over an expression
holds no document to rank with, so PostgreSQL recomputed it from the row for each match (the
parser and the stemmer, per row): ranking the newest 10,000 matches of "photo" took ~120 ms at a
million images, against ~3 ms reading a stored ``tsvector`` (docs/performance.md, "Scale").
The column is generated from the row, so every write path keeps it right without code of its
own; the GIN index (same name) moves from the expression onto it, and ANALYZE now keeps the
word statistics of the column itself.

Adding a stored generated column rewrites the table: 44 s for a million rows of the scale benchmark on 2
cores, during which the table is locked. SQLite keeps its FTS5 table (migration 0012): nothing
to do there, and the model knows nothing of the column (it is PostgreSQL's alone): a later
migration that changes the type of a column the document reads must drop it and add it again.
"""

from django.db import migrations

from gallery.migrations._operations import RunSQLOn

TABLE = "gallery_image"
COLUMN = "keyword_document"
GIN_INDEX = "gallery_image_keywords_gin"
# Exactly the expression of migration 0012's index (Django's SearchVector, compiled): title A,
# tags B, description C, the text read in the picture D, the english configuration.
DOCUMENT = (
    "setweight(to_tsvector('english'::regconfig, COALESCE(title, '')), 'A')"
    " || setweight(to_tsvector('english'::regconfig, COALESCE(tag_names, '')), 'B')"
    " || setweight(to_tsvector('english'::regconfig, COALESCE(description, '')), 'C')"
    " || setweight(to_tsvector('english'::regconfig, COALESCE(ocr_text, '') || ' ' || COALESCE(ocr_terms, '')), 'D')"
)


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0014_saved_search_match_order"),
    ]

    operations = [
        RunSQLOn(
            "postgresql",
            [
                f"ALTER TABLE {TABLE} ADD COLUMN {COLUMN} tsvector GENERATED ALWAYS AS ({DOCUMENT}) STORED",
                f"DROP INDEX IF EXISTS {GIN_INDEX}",
                f"CREATE INDEX {GIN_INDEX} ON {TABLE} USING gin ({COLUMN})",
                # The word statistics (gallery.catalogue.keywords) now come from the column; without
                # them until autovacuum's next ANALYZE (a rewrite does not count as changed rows), a
                # common word would rank every one of its matches again.
                f"ANALYZE {TABLE} ({COLUMN})",
            ],
            [
                f"DROP INDEX IF EXISTS {GIN_INDEX}",
                f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS {COLUMN}",
                f"CREATE INDEX {GIN_INDEX} ON {TABLE} USING gin (({DOCUMENT}))",
                f"ANALYZE {TABLE}",  # the expression index's statistics, as before
            ],
        ),
    ]

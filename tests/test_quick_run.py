"""One upload's quick run (every step a DAG run started by uploads executes, as its tasks call
them) reads a bounded number of rows whatever the gallery's size; near-duplicates are found
through the search engine, with a copy already in the built index and with two copies of one
run; saved searches are matched with their stored vectors, the text encoder idle; OCR reads the
new images only. Real tiny OpenCLIP model, real Annoy index and fresh segment, real OCR engine,
real database (SQLite or PostgreSQL)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from benchmarks.fresh_segment import add_rows
from benchmarks.index import clip_like_vectors
from gallery import indexing
from gallery.engine import embedder
from gallery.indexing.duplicates import near_duplicates_find
from gallery.indexing.ocr import images_read_text_after_embedding
from gallery.models import DuplicateGroup, Image, ImageText, SavedSearch, SavedSearchMatch
from gallery.search import text_query
from gallery.search.saved_searches import saved_search_create, saved_searches_record_matches
from tests.test_duplicates import members, photo

pytestmark = pytest.mark.django_db


def quick_run() -> indexing.EmbedReport:
    """The tasks of a run started by uploads, in order, calling what they call."""
    chunks = indexing.pending_chunks(chunk_size=1000, new_only=True)
    report = indexing.EmbedReport.total([indexing.images_embed_pending(ids=ids).as_dict() for ids in chunks])
    indexing.index_compact_if_due(scheduled=False, embed_report=report)
    near_duplicates_find(image_ids=report.ids)
    saved_searches_record_matches(image_ids=report.ids, model_id=report.model_id)
    images_read_text_after_embedding(embed_report=report, new_only=True)
    return report


def grow_gallery(count: int, *, start: int) -> None:
    """``count`` more indexed rows with synthetic vectors, then an hourly compaction over all."""
    model = embedder.embedder()
    add_rows(clip_like_vectors(count, dim=model.dim, seed=start), model_id=model.model_id,
             status=Image.Status.INDEXED, start=start)
    assert indexing.index_compact_if_due(scheduled=True) is not None


IMAGE_TABLE = re.compile(r'FROM "?gallery_image"?\b', re.I)


def rows_returned(sql: str) -> int:
    """What a captured SELECT returns when run again now."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) AS returned")
        return cursor.fetchone()[0]


def full_scans(sql: str) -> list[str]:
    """The plan's steps that read the whole image table (or one of its indexes) through."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            return [row[-1] for row in cursor.fetchall() if re.match(r"SCAN gallery_image\b", row[-1])]
        cursor.execute("SET LOCAL enable_seqscan = off")  # a sequential scan only where no index can serve
        cursor.execute(f"EXPLAIN {sql}")
        return [row[0] for row in cursor.fetchall() if "Seq Scan on gallery_image" in row[0]]


def image_rows_read() -> int | None:
    """Rows of the image table read in this transaction so far (PostgreSQL's counters)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
            "WHERE relname = 'gallery_image'"
        )
        return cursor.fetchone()[0]


def measured_quick_run(upload, seed: int) -> dict:
    upload(seed, title=f"New {seed}")
    if connection.vendor == "postgresql":
        # Statistics, as autovacuum keeps them; and, as on a large table, no reading a few
        # hundred rows through where an index serves: only a query that none serves does that.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE gallery_image")
            cursor.execute("SET LOCAL enable_seqscan = off")
    read_before = image_rows_read()
    with CaptureQueriesContext(connection) as captured:
        report = quick_run()
    read = None if read_before is None else image_rows_read() - read_before
    assert report.embedded == 1
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    on_images = [sql for sql in selects if IMAGE_TABLE.search(sql) and "FOR UPDATE" not in sql.upper()]
    return {
        "queries": len(captured.captured_queries),
        "rows": sum(rows_returned(sql) for sql in on_images),
        "scans": [scan for sql in on_images for scan in full_scans(sql)],
        "read": read,
    }


def test_one_uploads_quick_run_reads_as_many_rows_at_ten_times_the_gallery(member, upload, settings):
    # The worst case for the near-duplicate check: every neighbour the engine proposes is a
    # candidate whose row is read (any cosine will do), and none matches (the synthetic rows
    # have no hashes, and no cosine reaches the bar for rows without one).
    settings.DUPLICATE_MIN_COSINE, settings.DUPLICATE_COSINE_ALONE = -1.0, 1.01
    for text in ("a red circle", "a blue square", "stripes"):
        saved_search_create(user=member, query=text_query(text))
    grow_gallery(400, start=0)
    small = measured_quick_run(upload, 1)
    grow_gallery(3600, start=400)
    large = measured_quick_run(upload, 2)

    assert Image.objects.count() == 4002
    assert ImageText.objects.count() == 2  # the two uploads were read; none of the 4,000 older rows
    assert small["queries"] == large["queries"]
    # The new row, its fresh segment, at most DUPLICATE_CANDIDATES candidates and a few
    # single-row lookups: never a share of the 400 or 4,000 stored rows.
    bound = 2 * settings.DUPLICATE_CANDIDATES + 20
    assert small["rows"] <= bound and large["rows"] <= bound, (small, large)
    assert small["scans"] == [] and large["scans"] == []
    if connection.vendor == "postgresql":  # what the database itself counted, scans and index reads
        assert small["read"] <= bound and large["read"] <= bound, (small, large)


@pytest.fixture
def published_cat(upload):
    """A cat photo and a coffee photo, embedded and in the built index (not the fresh segment)."""
    cat, _ = upload(data=photo("chelsea"), title="Cat")
    coffee, _ = upload(data=photo("coffee"), title="Coffee")
    assert indexing.index_refresh().published is not None
    assert set(Image.objects.values_list("status", flat=True)) == {"indexed"}
    return cat, coffee


def test_a_copy_of_an_image_in_the_built_index_is_grouped_with_it(published_cat, upload):
    cat, coffee = published_cat
    copy, _ = upload(data=photo("chelsea", width=200, quality=40), title="Cat, small copy")
    quick_run()
    assert [members(group) for group in DuplicateGroup.objects.all()] == [{cat.pk, copy.pk}]
    assert Image.objects.get(pk=cat.pk).status == "indexed"  # found in the index, not the fresh segment


def test_two_copies_uploaded_in_one_run_are_grouped(published_cat, upload):
    cat, coffee = published_cat
    rocket, _ = upload(data=photo("rocket"), title="Rocket")
    small, _ = upload(data=photo("rocket", width=200, quality=40), title="Rocket, small copy")
    cropped, _ = upload(data=photo("rocket", crop=0.05), title="Rocket, cropped")
    quick_run()
    assert [members(group) for group in DuplicateGroup.objects.all()] == [{rocket.pk, small.pk, cropped.pk}]


def test_two_copies_are_grouped_even_when_a_publish_took_the_fresh_segment_away(published_cat, upload):
    cat, _ = published_cat
    rocket, _ = upload(data=photo("rocket"), title="Rocket")
    small, _ = upload(data=photo("rocket", width=200, quality=40), title="Rocket, small copy")
    report = indexing.images_embed_pending()
    # The index of the previous run is still current and the new rows are no longer pending:
    # neither the index nor the fresh segment holds them.
    Image.objects.filter(pk__in=report.ids).update(status=Image.Status.INDEXED)
    near_duplicates_find(image_ids=report.ids)
    assert [members(group) for group in DuplicateGroup.objects.all()] == [{rocket.pk, small.pk}]


@pytest.fixture
def counted_text_encoder(monkeypatch):
    """The real embedder, its text encoder counting its calls; no cached text vectors."""
    model = embedder.embedder()
    calls = []
    real = model.encode_texts

    def encode_texts(texts, *args, **kwargs):
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode_texts", encode_texts)
    embedder._text_vector.cache_clear()  # as in a new task process
    yield calls
    embedder._text_vector.cache_clear()


def test_saved_searches_are_matched_with_their_stored_vectors(member, published_cat, upload, settings, counted_text_encoder):
    saved = saved_search_create(user=member, query=text_query("a cat on a sofa"))
    assert counted_text_encoder == [["a cat on a sofa"]]  # encoded once, when saved
    assert saved.query_model == embedder.embedder().model_id and saved.query_vector is not None
    settings.SEARCH_WEAK_SCORE = -1.0  # every new image matches
    new, _ = upload(seed=7, title="New")
    quick_run()
    assert list(SavedSearchMatch.objects.values_list("saved_search", "image")) == [(saved.pk, new.pk)]
    assert counted_text_encoder == [["a cat on a sofa"]]  # the matching task never encoded it again

    # After a model change each saved search is encoded once more, by the first run that needs it.
    SavedSearch.objects.filter(pk=saved.pk).update(query_model="an older model")
    later, _ = upload(seed=8, title="Later")
    embedder._text_vector.cache_clear()  # a new task process
    quick_run()
    assert counted_text_encoder == [["a cat on a sofa"], ["a cat on a sofa"]]
    assert SavedSearch.objects.get(pk=saved.pk).query_model == embedder.embedder().model_id
    assert SavedSearchMatch.objects.filter(saved_search=saved, image=later).exists()
    upload(seed=9, title="Latest")
    embedder._text_vector.cache_clear()
    quick_run()
    assert len(counted_text_encoder) == 2


def test_the_embed_step_alone_neither_groups_nor_matches(member, published_cat, upload, settings):
    """The write path does not call the read side: those are tasks of their own."""
    saved_search_create(user=member, query=text_query("a cat"))
    settings.SEARCH_WEAK_SCORE = -1.0
    upload(data=photo("chelsea", width=200, quality=40), title="Cat, small copy")
    assert indexing.images_embed_pending().embedded == 1
    assert not DuplicateGroup.objects.exists() and not SavedSearchMatch.objects.exists()


def test_a_local_index_copy_is_checked_once_and_again_when_its_files_change(published_cat, monkeypatch):
    """Each task process loads the index: reading all of its files every time would cost
    seconds at a million images, so a copy is checked once, and again once it changed."""
    from gallery.engine import index_cache
    from indexer import index as annoy_index

    checked = []
    real = annoy_index.verify_files
    monkeypatch.setattr(annoy_index, "verify_files", lambda directory, manifest: (checked.append(directory), real(directory, manifest)))
    index_cache.clear_index_cache()
    assert len(index_cache.current_index()) == 2 and len(checked) == 1
    index_cache.clear_index_cache()  # another process on this host
    assert len(index_cache.current_index()) == 2 and len(checked) == 1
    copy = checked[0] / annoy_index.INDEX_FILE
    with open(copy, "r+b") as handle:  # damaged on this host's disk
        handle.seek(100)
        handle.write(b"\xff" * 64)
    index_cache.clear_index_cache()
    assert len(index_cache.current_index()) == 2  # refused, fetched again from storage, checked
    assert len(checked) == 3


def test_the_embed_report_lists_only_images_embedded_for_the_first_time(published_cat, upload):
    """A model change re-embeds the whole gallery: its duplicates and matches were looked for
    when each image was new, so the tasks after embed get only the new images."""
    cat, coffee = published_cat
    Image.objects.filter(pk=cat.pk).update(embedding_model="an older model")  # to be embedded again
    new, _ = upload(seed=5, title="New")
    report = indexing.images_embed_pending()
    assert report.embedded == 2 and report.ids == [new.pk]


def test_embed_pending_groups_near_duplicates_as_the_dag_does(published_cat, upload):
    """Embedding by command (README: embed_pending + build_index) checks the new images too: no
    later run sees them as new, so a check skipped here would never happen."""
    from django.core.management import call_command

    cat, _ = published_cat
    copy, _ = upload(data=photo("chelsea", width=200, quality=40), title="Cat, small copy")
    call_command("embed_pending", verbosity=0)
    assert [members(group) for group in DuplicateGroup.objects.all()] == [{cat.pk, copy.pk}]

"""What a request costs must not grow with the gallery (issue 21): each page makes a pinned
number of queries, none of them counts the image table or skips rows with OFFSET, and every
one reads through an index, as the database's own query plan says (SQLite's EXPLAIN QUERY
PLAN; PostgreSQL's EXPLAIN with sequential scans and sorts priced out, so a table small enough to
scan in a test still shows whether an index could answer). Timings are in benchmarks/scale.py."""

from __future__ import annotations

import re
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from gallery.catalogue.curation import images_set_hidden
from gallery.catalogue.status import SERVING_KEY, STATUS_COUNTS_KEY
from gallery.models import Image, SavedSearch, SavedSearchMatch
from tests.conftest import local_files_marks, local_files_only

API = "/api/v1"


def query_plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        # On a test's few rows any plan is cheap: price out what a large table would not get (a
        # whole-table scan; sorting rows that an index gives in order) to see whether an index
        # answers, in order. (Bitmaps stay: a GIN index answers only with one.)
        off = ("enable_seqscan", "enable_sort")
        for name in off:
            cursor.execute(f"SET {name} = off")
        try:
            cursor.execute(f"EXPLAIN {sql}")
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            for name in off:
                cursor.execute(f"RESET {name}")


def full_scans(sql: str) -> list[str]:
    """The tables this query reads whole: a plain scan, or (without a LIMIT) a walk over a
    whole index."""
    plan, limited = query_plan(sql), " LIMIT " in sql.upper()
    if connection.vendor == "sqlite":
        tables = set(connection.introspection.table_names())  # not a subquery's rows, nor a constant
        scans = re.findall(r"^\s*SCAN (\S+)(.*)$", plan, flags=re.M)
        return [
            table for table, rest in scans
            # A full-text table answers MATCH from its own index ("VIRTUAL TABLE INDEX 0:M...").
            if table in tables and not re.search(r"VIRTUAL TABLE INDEX \d+:M", rest) and ("USING" not in rest or not limited)
        ]
    return re.findall(r"Seq Scan on (\S+)", plan)


def check_queries(queries) -> None:
    """No query counts the image table, skips rows with OFFSET, or reads a table whole."""
    for query in queries:
        sql = query["sql"]
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        if re.search(r"COUNT\(.*FROM \"gallery_image\"", sql, flags=re.S):
            # Only the fresh segment's fingerprint counts, over its own partial index: rows
            # embedded since the last compaction, at most FRESH_SEGMENT_MAX by design.
            assert "image_fresh_segment" in query_plan(sql), sql
        assert " OFFSET " not in sql.upper(), sql
        assert not full_scans(sql), f"{sql}\n{query_plan(sql)}"


def capture(client, url, **kwargs):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **kwargs)
    assert response.status_code in (200, 404), (url, response.status_code)
    return response, captured.captured_queries


@pytest.fixture
def status_cached(settings):
    settings.INDEX_STATUS_CACHE_SECONDS = 30
    cache.delete_many([STATUS_COUNTS_KEY, SERVING_KEY])
    yield
    cache.delete_many([STATUS_COUNTS_KEY, SERVING_KEY])


@pytest.fixture
def saved(member, indexed_gallery):
    saved = SavedSearch.objects.create(user=member, text="a red square")
    SavedSearchMatch.objects.bulk_create(SavedSearchMatch(saved_search=saved, image=image, score=0.3) for image in indexed_gallery[:5])
    return saved


# (url, queries) for a visitor: the pinned number of queries of each page, with the status line
# (its counts and the serving version) in the cache: it costs no query. A change here is a change
# in what a page costs: check it scales.
VISITOR_PAGES = {
    "gallery": ("/", 1),  # the page of 17 rows
    "deep gallery page": ("/?cursor={cursor}", 1),
    # 1; its facets (3 queries over the id sample) are in the cache since the warm-up request
    "deep timeline page, filtered": ("/?order=taken&orientation=landscape&cursor={timeline_cursor}", 1),
    # The current version, the fresh segment's fingerprint and the visibility generation are one
    # query (gallery.engine.backend.search_view): the results' visibility costs none of its own.
    # The image's vector is taken from its row, read once (gallery.search.SearchQuery.similar).
    "image with more like this": ("/images/{pk}/", 5),  # 4, and whether OCR read its original (one row by key)
    # No image has both words: the any-word fallback runs. It asks which words are too common to
    # rank: SQLite counts each word's matches up to RANKED_MATCHES_MAX + 1 (one query, the same at
    # any size, kept per process: the warm-up request paid it), PostgreSQL reads its statistics.
    # PostgreSQL asks every word and any word in one statement (gallery.catalogue.keywords); SQLite
    # one after the other, in process. Whether the query has a pin: held by the process, with the
    # visibility generation (gallery.search.pins). 5 (4), and the facets' tags (the results'
    # dates and cameras come with their visibility).
    "search page": ("/search/?q=a+red+square", 6 if connection.vendor == "sqlite" else 5),
    # A page's tags are in its rows (Image.tag_name_list): no query for them here or in the lists.
    "API search": (f"{API}/search/?q=a+red+square", 4 if connection.vendor == "sqlite" else 3),
    # the image with its vector, the index and segment's statement (the visibility with it), the page
    "API more like this": (API + "/images/{pk}/similar/", 3),
    "API image list": (f"{API}/images/", 1),
    "API deep image list": (API + "/images/?cursor={api_cursor}", 1),
    "status": (f"{API}/index/", 0),
    "thumbnail": ("/media/{thumbnail}", 1),
    "missing media path": ("/media/thumbnails/no-such-file.jpg", 1),
}


LOCAL_MEDIA = "object storage serves presigned URLs, not /media/"


@pytest.mark.parametrize(
    "page", [pytest.param(page, marks=local_files_marks(LOCAL_MEDIA)) if url.startswith("/media/") else page for page, (url, _) in VISITOR_PAGES.items()]
)
def test_every_page_reads_through_indexes_in_a_pinned_number_of_queries(client, indexed_gallery, status_cached, page):
    url, expected = VISITOR_PAGES[page]
    image = indexed_gallery[8]
    list_page = client.get(f"{API}/images/", {"page_size": 5}).json()
    after_photo_8 = client.get(f"{API}/images/", {"page_size": 12}).json()  # Photo 19 .. Photo 8
    timeline = client.get(f"{API}/images/", {"page_size": 12, "order": "taken", "orientation": "landscape"}).json()
    url = url.format(
        cursor=re.search(r"cursor=([^&]+)", after_photo_8["next"])[1], pk=image.pk, thumbnail=image.thumbnail.name,
        api_cursor=re.search(r"cursor=([^&]+)", list_page["next"])[1],
        timeline_cursor=re.search(r"cursor=([^&]+)", timeline["next"])[1],
    )
    client.get(f"{API}/index/")  # the status line (its counts and the serving version), into the cache
    client.get(url)  # the model, the index and the fresh segment, loaded once per process
    response, queries = capture(client, url)
    check_queries(queries)
    assert len(queries) == expected, "\n".join(query["sql"] for query in queries)
    if page == "deep gallery page":  # older than the cursor, straight from the index
        shown = re.findall(r'class="gallery-link" title="([^"]*)"', response.content.decode())
        assert shown == [f"Photo {n}" for n in range(7, -1, -1)]
        (paged,) = [query["sql"] for query in queries if '"uploaded_at" <' in query["sql"]]
        plan = query_plan(paged)
        assert ("SEARCH gallery_image USING INDEX image_newest_first" in plan) or ("image_newest_first" in plan and "Index Cond" in plan), plan
    if page == "deep timeline page, filtered":  # the timeline's index, whatever the filter
        shown = re.findall(r'class="gallery-link" title="([^"]*)"', response.content.decode())
        assert shown == [f"Photo {n}" for n in range(7, -1, -1)]
        (paged,) = [query["sql"] for query in queries if '"taken_at" <' in query["sql"]]
        plan = query_plan(paged)
        assert ("SEARCH gallery_image USING INDEX image_timeline" in plan) or ("image_timeline" in plan and "Index Cond" in plan), plan


# The API's list: the token, a count of the searches (not of their matches), the page's ids, and
# the new matches of that page's searches only.
@pytest.mark.parametrize("url, expected", [("/saved/", 5), (f"{API}/saved-searches/", 4)])
def test_saved_search_pages_read_through_indexes(client, member, saved, status_cached, url, expected):
    client.force_login(member)
    client.get(url)
    response, queries = capture(client, url, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member).key}")
    assert "a red square" in response.content.decode()
    check_queries(queries)
    assert len(queries) == expected, "\n".join(query["sql"] for query in queries)
    counts = [query["sql"] for query in queries if "COUNT(" in query["sql"] and "savedsearchmatch" in query["sql"]]
    # Matches are counted only up to a cap (COUNT over a LIMIT), and only for the new-match badges.
    assert all(re.search(r"SELECT COUNT\(\*\) FROM \(SELECT .* LIMIT \d+\) capped", sql, flags=re.S) for sql in counts), counts



def test_a_saved_searchs_matches_are_one_page_read_in_index_order(client, member, saved, status_cached, upload):
    """The matches list reads its page through the (search, newest first) index, and its tags
    in one query, however many matches there are (before: every match sorted, with its
    image's vector, and a tags query per match)."""
    more = [upload(seed, title=f"More {seed}")[0] for seed in range(100, 112)]
    SavedSearchMatch.objects.bulk_create(SavedSearchMatch(saved_search=saved, image=image, score=0.4) for image in more)
    token = f"Token {Token.objects.create(user=member).key}"
    url = f"{API}/saved-searches/{saved.pk}/matches/"
    client.get(url, HTTP_AUTHORIZATION=token)
    response, queries = capture(client, url, HTTP_AUTHORIZATION=token)
    assert response.json()["count"] == 17 and len(response.json()["results"]) == 16
    check_queries(queries)
    # the token, the search, the capped count, the page (its tags in its rows), marking it seen
    assert len(queries) == 5, "\n".join(query["sql"] for query in queries)
    (page,) = [query["sql"] for query in queries if " LIMIT 16" in query["sql"] and "savedsearchmatch" in query["sql"]]
    assert '"embedding"' not in page
    plan = query_plan(page)
    if connection.vendor == "sqlite":
        assert "USING INDEX match_newest_first" in plan and "TEMP B-TREE" not in plan, plan
    else:
        assert "match_newest_first" in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("sort", ["relevance", "newest"])
def test_search_reads_its_results_visibility_dates_and_facets_from_one_small_index(indexed_gallery, sort):
    """The ~320 ranked ids' visibility, their dates (to sort by date) and what their facets
    count (dates, cameras) come from a small partial index (migrations 0016-0018), not from 320
    rows scattered over a large table: on PostgreSQL 18.8 ms per search at a million images with
    those pages cold, against 2.2 ms (the plan at that size; on a test's few rows the planner's
    choice turns on its estimates); on SQLite 0.8-4.6 ms against 0.45 ms, named in the query
    (SQLite goes by rowid otherwise); 2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16."""
    from gallery import search

    images_set_hidden(images=Image.objects.filter(pk=indexed_gallery[0].pk), hidden=True)
    with CaptureQueriesContext(connection) as captured:
        found = search.search(search.text_query("photo"), search.ResultOptions(relevant=sort != "relevance", sort=sort))
    assert indexed_gallery[0].pk not in {hit.image.pk for hit in found} and len(found) >= 1
    Image.objects.filter(pk=found[0].image.pk).update(camera_model="X-100")  # a result's camera, read by its facets
    with CaptureQueriesContext(connection) as counted:
        spread = found.facets()
    assert spread.cameras == {"X-100": 1} and sum(spread.years.values()) == len(found)
    checks = [query["sql"] for query in [*captured, *counted] if "hidden" in query["sql"] and "gallery_image_fts" not in query["sql"]]
    assert len(checks) == 2, checks  # the search's, the facets'
    # Asked for with the search (the search page always is; the API's facets=true), the facets'
    # dates and cameras come with the results' visibility: one read of the index, the same facets.
    with CaptureQueriesContext(connection) as once:
        spread_too = search.search(
            search.text_query("photo"), search.ResultOptions(relevant=sort != "relevance", sort=sort, facets=True)
        ).facets()
    assert spread_too == spread
    assert len([query for query in once if "hidden" in query["sql"] and "gallery_image_fts" not in query["sql"]]) == 1
    # A search by relevance wants no dates or cameras: it reads the hidden and deleted ids
    # instead (the test below), the facets the index of visible ids.
    search_check, facets_check = checks
    if sort == "relevance":
        assert "gallery_deletedimage" in search_check and "image_visible_ids" not in search_check, search_check
        checks = [facets_check]
    for check in checks:
        if connection.vendor == "sqlite":
            assert "INDEXED BY image_visible_ids" in check, check
            assert query_plan(check).count("USING COVERING INDEX image_visible_ids") == 1, query_plan(check)
            continue
        read = re.fullmatch(r"SELECT (.+) FROM gallery_image WHERE NOT hidden AND id = ANY\(.+\)", check, re.DOTALL)
        assert read and set(read[1].split(", ")) <= {"id", "taken_at", "camera_model"}, check
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_indexdef('image_visible_ids'::regclass)")
            assert cursor.fetchone()[0].endswith("USING btree (id) INCLUDE (taken_at, camera_model) WHERE (NOT hidden)")


def test_a_search_by_relevance_reads_its_results_visibility_with_the_index_version(indexed_gallery):
    """A search that wants no dates or cameras (the API's, by relevance) leaves out the hidden
    and deleted ids this process holds, and reads only the number the database changes with
    them (gallery.catalogue.tombstones), in the statement that reads the index version and the
    fresh segment's fingerprint: no query of its own, whatever the gallery's size, where asking
    which of its ~320 ids are visible cost 1.04 ms at a million images on SQLite against 0.45 at
    ten thousand (section 27). A hide or a deletion is seen by the next search; a change that
    is not about visibility reads nothing again."""
    from gallery import search
    from gallery.catalogue import visible

    ids = [image.pk for image in indexed_gallery]

    def searched():
        with CaptureQueriesContext(connection) as captured:
            found = sorted(hit.image.pk for hit in search.search(search.text_query("photo")))
        about_visibility = [
            query["sql"] for query in captured
            if any(word in query["sql"] for word in ("gallery_deletedimage", "WHERE hidden", "NOT hidden"))
        ]
        # The generation comes with the index version and the fresh segment's fingerprint, never alone.
        assert [query["sql"] for query in captured if "gallery_visibilitygeneration" in query["sql"] and "fresh_at" not in query["sql"]] == [
            sql for sql in about_visibility if "gallery_visibilitygeneration" in sql
        ]
        assert sum("gallery_visibilitygeneration" in query["sql"] and "fresh_at" in query["sql"] for query in captured) == 1
        return found, about_visibility

    found, first = searched()  # nothing held yet: the ids and their generation in one statement
    assert found == ids and len(first) == 1 and "gallery_deletedimage" in first[0] and "image_visible_ids" not in first[0]
    if connection.vendor == "sqlite":
        assert "USING COVERING INDEX image_hidden_ids" in query_plan(first[0]), query_plan(first[0])
    assert searched() == (ids, [])
    images_set_hidden(images=Image.objects.filter(pk=ids[0]), hidden=True)
    Image.objects.filter(pk=ids[1]).delete()
    found, changed = searched()
    assert found == ids[2:] and len(changed) == 1
    Image.objects.filter(pk=ids[2]).update(title="Renamed")  # not about visibility
    indexed_gallery[3].save()  # every field written again, hidden as it was
    assert searched() == (ids[2:], [])
    images_set_hidden(images=Image.objects.filter(pk=ids[0]), hidden=False)
    assert searched()[0] == [ids[0], *ids[2:]]
    # More hidden and deleted ids than a process keeps: each search asks about its own.
    most, visible.MAX_HELD = visible.MAX_HELD, 1
    try:
        images_set_hidden(images=Image.objects.filter(pk__in=ids[2:4]), hidden=True)
        found, asked = searched()
        assert found == [ids[0], *ids[4:]] and len(asked) == 2, asked  # the ids (too many), then its own
        assert ("= ANY" if connection.vendor == "postgresql" else "IN wanted") in asked[1], asked
        found, again = searched()  # "too many" is held too: only its own ids again
        assert found == [ids[0], *ids[4:]] and len(again) == 1 and again[0] == asked[1], again
    finally:
        visible.MAX_HELD = most


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite names its index in the query")
def test_without_the_visibility_index_search_reads_the_rows_and_says_so(indexed_gallery, caplog):
    """A database not migrated to 0017 (or a table rebuilt without the index) is slower, not
    broken, and says so once per process, not on every search."""
    from gallery import search
    from gallery.catalogue import visible

    visible._say_once.cache_clear()
    images_set_hidden(images=Image.objects.filter(pk=indexed_gallery[0].pk), hidden=True)
    Image.objects.filter(pk=indexed_gallery[1].pk).update(camera_model="X-100")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX image_visible_ids")  # rolled back with the test
    for sort in ("relevance", "newest"):
        found = search.search(search.text_query("photo"), search.ResultOptions(sort=sort))
        assert {hit.image.pk for hit in found} == {image.pk for image in indexed_gallery[1:]}
        assert found.facets().cameras == {"X-100": 1}
    assert caplog.text.count("manage.py migrate") == 1


@local_files_only(LOCAL_MEDIA)
def test_media_path_is_one_index_lookup(client, indexed_gallery, status_cached):
    image = indexed_gallery[3]
    client.get(f"{API}/index/")  # the 404 page's status line, from the cache
    for path, status in ((image.thumbnail.name, 200), (image.file.name, 200), ("originals/made-up.jpg", 404)):
        response, queries = capture(client, f"/media/{path}")
        assert response.status_code == status
        lookups = [query["sql"] for query in queries if 'FROM "gallery_image"' in query["sql"]]
        assert len(lookups) == 1, lookups
        lookup = lookups[0]
        plan = query_plan(lookup)
        assert "image_file" in plan and "image_thumbnail" in plan and not full_scans(lookup), plan


def test_status_counts_come_from_the_cache_at_most_the_stated_seconds_old(client, indexed_gallery, upload, settings, status_cached):
    settings.INDEX_STATUS_CACHE_SECONDS = 1
    first = client.get(f"{API}/index/").json()
    assert (first["searchable"], first["waiting"]) == (20, 0)
    upload(99)
    response, queries = capture(client, f"{API}/index/")
    assert response.json()["waiting"] == 0  # the cached figure, up to a second old
    assert not any("COUNT(" in query["sql"] for query in queries)
    assert "20 images searchable" in client.get("/").content.decode()
    time.sleep(1.1)
    response, queries = capture(client, f"{API}/index/")
    assert response.json()["waiting"] == 1 and sum("COUNT(" in query["sql"] for query in queries) == 1


def test_the_serving_version_in_the_status_line_is_at_most_the_stated_seconds_old(client, indexed_gallery, settings, status_cached):
    """The status line's version is cached like its counts, each under its own key for the
    period: a page makes no query for it, and a new version shows once the period has passed."""
    from gallery.indexing import index_publish

    settings.INDEX_STATUS_CACHE_SECONDS = 1
    first = client.get(f"{API}/index/").json()["version"]
    published = index_publish(force=True)
    assert published is not None and published.version != first
    response, queries = capture(client, f"{API}/index/")
    assert response.json()["version"] == first and not queries  # both from the cache
    time.sleep(1.1)
    assert client.get(f"{API}/index/").json()["version"] == published.version


def test_without_a_cache_period_the_status_counts_every_time(client, indexed_gallery, upload, settings):
    settings.INDEX_STATUS_CACHE_SECONDS = 0
    assert client.get(f"{API}/index/").json()["waiting"] == 0
    upload(98)
    assert client.get(f"{API}/index/").json()["waiting"] == 1


def test_the_status_count_on_a_cache_miss_reads_one_small_index_not_the_rows(client, indexed_gallery):
    """The count itself still reads every row's entry, once per cache period: from an index of
    three short columns, not from rows that carry a 2 KB vector each."""
    response, queries = capture(client, f"{API}/index/")
    assert response.json()["searchable"] == 20
    (count,) = [query["sql"] for query in queries if "COUNT(" in query["sql"]]
    plan = query_plan(count)
    if connection.vendor == "sqlite":
        assert "USING COVERING INDEX image_status_counts" in plan, plan
    else:  # an index-only scan once the visibility map is set; either way PostgreSQL keeps vectors in TOAST
        assert "on image_status_counts" in plan and "Seq Scan" not in plan, plan


def test_gallery_facets_read_the_id_sample_by_key(indexed_gallery):
    """A filtered gallery's facets (gallery.search.facets) read the sampled ids' rows by primary key:
    three queries, none of them over the whole table, whatever the filter."""
    from gallery.catalogue import sampling
    from gallery.catalogue.filters import BrowseFilter
    from gallery.search import facets

    sampling.id_sample()  # the process's sample, drawn before (two lookups, a count; every SAMPLE_SECONDS)
    images = BrowseFilter({"orientation": "landscape"}, queryset=Image.objects.filter(hidden=False)).qs
    with CaptureQueriesContext(connection) as captured:
        spread = facets.of_images(images)
    check_queries(captured.captured_queries)
    assert len(captured.captured_queries) == 3
    assert sum(spread.years.values()) == len(indexed_gallery)  # 20 ids: the sample is the gallery, counted exactly


def test_gallery_facets_are_cached_apart_for_curators_and_visitors(client, indexed_gallery, settings, django_user_model):
    """Cached by the filters and by whether hidden images may be among them: a curator's facets
    of the hidden images never reach a visitor who asks the same URL."""
    settings.INDEX_STATUS_CACHE_SECONDS = 30
    cache.clear()
    Image.objects.filter(title__in=["Photo 3", "Photo 7"]).update(hidden=True, camera_model="Secret Cam")
    client.force_login(django_user_model.objects.create_superuser("curator", password="x"))
    assert "Secret Cam" in client.get("/", {"order": "taken", "hidden": "true"}).content.decode()
    client.logout()
    page = client.get("/", {"order": "taken", "hidden": "true"}).content.decode()
    assert "Secret Cam" not in page and 'id="refine"' not in page and "gallery-link" not in page


def test_no_single_column_index_on_uploaded_at_or_status(db):
    """Migration 0013: the composite indexes that lead with these columns serve their queries."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "gallery_image")
    single = {name: info["columns"] for name, info in constraints.items()
              if info["index"] and not info["unique"] and info["columns"] in (["uploaded_at"], ["status"])}
    assert single == {"image_without_vector": ["status"]}  # the partial one of new uploads stays
    assert {"image_newest_first", "image_status_counts"} <= set(constraints)


def test_a_request_leaves_its_database_connection_open_for_the_next(transactional_db, settings):
    """What Django does when a request starts and ends (close_old_connections) keeps the
    thread's connection (DATABASE_CONN_MAX_AGE): no new PostgreSQL connection per request."""
    from django.db import close_old_connections

    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 60
    connection.close()  # one opened by an earlier test may carry another test's CONN_MAX_AGE
    connection.ensure_connection()
    held = connection.connection
    close_old_connections()
    assert connection.connection is held
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 0  # as before: one connection per request
    try:
        connection.ensure_connection()
        close_old_connections()
        assert connection.connection is None
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = 60


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own page cache")
def test_a_sqlite_connection_keeps_more_of_the_file_than_sqlites_default(db, settings):
    """A search reads index pages scattered over the file (4.5 GB at a million images): each
    connection keeps DATABASE_SQLITE_CACHE_MB of them (64 MB), not SQLite's 2 MB."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        assert cursor.fetchone()[0] == -settings.SQLITE_CACHE_MB * 1024 == -64 * 1024


def test_pages_of_results_read_their_rows_by_sql_compiled_once_per_page_length(indexed_gallery):
    """Compiling the page's QuerySet cost a third of reading 16 rows (0.45 of 1.8 ms at a million
    images): the SQL is made once per process and page length, and each page still gets its own
    rows, in rank order, without their vectors."""
    from gallery import search

    search._rows_sql.cache_clear()
    results = search.search(search.text_query("photo"))
    pages = [results[0:4], results[4:8], results[8:11]]
    assert [[hit.image.pk for hit in page] for page in pages] == [[pk for pk, *_ in results._ranked[a:b]] for a, b in ((0, 4), (4, 8), (8, 11))]
    assert all(hit.image.get_deferred_fields() == {"embedding"} for page in pages for hit in page)
    assert (search._rows_sql.cache_info().misses, search._rows_sql.cache_info().hits) == (2, 1)  # lengths 4, 4, 3


def test_an_images_page_url_is_reversed_once_per_script_prefix(monkeypatch):
    """``reverse`` matches the URL patterns on every call (~20 us on 2 AMD EPYC cores, 16 times a
    page of results or of the gallery): an image's URL comes from a pattern reversed once per script prefix and
    URLconf, and is still what ``reverse`` gives, under any prefix."""
    from django.urls import NoReverseMatch, reverse, set_script_prefix

    from gallery import models

    first, second = Image(pk=7), Image(pk=123_456)
    models._image_page_url.cache_clear()
    calls = []
    monkeypatch.setattr(models, "reverse", lambda *args, **kwargs: calls.append(args) or reverse(*args, **kwargs))
    try:
        for prefix in ("/", "/photos/", "/"):
            set_script_prefix(prefix)
            assert [first.get_absolute_url(), second.get_absolute_url()] == [
                reverse("gallery:image-detail", args=[image.pk]) for image in (first, second)
            ]
            assert first.get_absolute_url().startswith(f"{prefix}images/")
    finally:
        set_script_prefix("/")
    assert len(calls) == 2  # once for "/", once for "/photos/"
    with pytest.raises(NoReverseMatch):  # an image not saved has no page, as before
        Image().get_absolute_url()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's heap: a row's new version goes where there is room")
def test_publishing_writes_the_rows_it_marks_in_id_order(db):
    """Publishing marks every row of the build indexed, a million after a large import, and each
    marked row gets a new version on the heap. Written in the order of the ids, the newest rows
    stay together, and a word's ranking of its newest matches reads few pages. In hash order, the
    newest 10,000 of a million lay on 2,465 pages against 386 at 10,000 (docs/performance.md, section 30)."""
    from benchmarks.fresh_segment import add_rows
    from benchmarks.index import clip_like_vectors
    from gallery.engine import embedder
    from gallery.indexing import index_publish

    model = embedder.embedder()
    before = Image.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    add_rows(clip_like_vectors(3000, dim=model.dim, seed=3), model_id=model.model_id, status=Image.Status.PENDING, start=0)
    assert index_publish(force=True) is not None
    with connection.cursor() as cursor:
        cursor.execute('SELECT status, (ctid::text::point)[0] FROM "gallery_image" WHERE id > %s ORDER BY id', [before])
        rows = cursor.fetchall()
    assert len(rows) == 3000
    assert {status for status, _ in rows} == {Image.Status.INDEXED}
    pages = [page for _, page in rows]
    # Each page the new versions went to (the end of the table, or room an earlier test left)
    # holds about one run of consecutive ids (a page with room left may be taken up again); in
    # hash order nearly every row was a run of its own.
    runs = 1 + sum(page != after for page, after in zip(pages, pages[1:]))
    assert runs < 1.5 * len(set(pages)) < len(pages) / 5, (runs, len(set(pages)))

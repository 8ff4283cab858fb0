"""Tags and hybrid ranking (issue 16, parts 1 and 2), on SQLite (FTS5) and PostgreSQL (GIN +
websearch_to_tsquery) alike: the suite runs on both (scripts/test)."""

import io
from importlib import import_module

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from gallery import search
from gallery.catalogue import curation, keywords, tags
from gallery.catalogue.uploads import image_create
from gallery.indexing import index_refresh
from gallery.models import Image, Tag
from gallery.search.ranking import BOTH, LOOKS, WORDS, fuse
from tests.conftest import as_upload
from tests.images import image_bytes

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()


def add(seed, title, description="", tag_text=""):
    image, created = image_create(
        file=io.BytesIO(image_bytes(seed)), filename=f"p{seed}.jpg", title=title, description=description, tags=tag_text
    )
    assert created
    return image


@pytest.fixture
def catalogue(db):
    """Twelve photos with words a picture cannot show (codes, names), embedded and published."""
    images = {
        "sku": add(1, "SKU-10482 garden chair", "Teak, folding.", "furniture, garden"),
        "lighthouse": add(2, "Old lighthouse", "A lighthouse at the harbour entrance.", "seaside"),
        "harbour": add(3, "Fishing boats", "Boats in the harbour at dawn.", "seaside, boats"),
        "maria": add(4, "Portrait", "Maria Lindqvist in her studio.", "people"),
        "other_sku": add(5, "SKU-10483 garden table", "Teak.", "furniture"),
    }
    for seed in range(6, 13):
        images[f"filler{seed}"] = add(seed, f"Picture {seed}", "Colours and shapes.")
    assert index_refresh().published is not None
    return images


@pytest.fixture
def member():
    user = User.objects.create_user("member", password="pw-member-123")
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def curator_user():
    user = User.objects.create_user("curator", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_image", "change_image", "view_tag"]))
    return user


@pytest.fixture
def curator(curator_user):
    client = APIClient()
    client.force_authenticate(curator_user)
    return client


def keyword_ids(text):
    return [pk for pk, _ in keywords.keyword_ranking(text, 50)]


# --- fusion --------------------------------------------------------------------------------


def test_fuse_sums_reciprocal_ranks():
    fused = fuse([(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 5.0), (4, 4.0)], k=60)
    assert [(pk, matched) for pk, _, matched in fused] == [(3, BOTH), (1, LOOKS), (2, LOOKS), (4, WORDS)]
    scores = {pk: score for pk, score, _ in fused}
    assert scores[3] == pytest.approx(1 / 61 + 1 / 63) and scores[1] == pytest.approx(1 / 61)
    assert scores[2] == scores[4] == pytest.approx(1 / 62)  # a tie: the smaller id first


def test_fuse_lets_two_fair_ranks_beat_one_first_place_and_exact_matches_lead():
    clip = [(10, 0.3), (11, 0.2), (12, 0.1)]
    words = [(12, 3.0), (13, 2.0)]
    assert [pk for pk, *_ in fuse(clip, words, k=60)][:2] == [12, 10]
    boosted = fuse(clip, words, k=60, exact={13})
    assert boosted[0][0] == 13 and boosted[0][2] == WORDS
    assert [pk for pk, *_ in fuse(clip, [], exact={10})] == [10, 11, 12]  # exact only counts for ranked ids
    with pytest.raises(ValueError):
        fuse(clip, words, k=0)


# --- keyword search on this database's engine ---------------------------------------------


def test_keywords_match_title_description_and_tags(catalogue):
    assert keyword_ids("lighthouse")[0] == catalogue["lighthouse"].pk  # title (and description)
    assert set(keyword_ids("harbour")) == {catalogue["lighthouse"].pk, catalogue["harbour"].pk}  # descriptions
    assert set(keyword_ids("seaside")) == {catalogue["lighthouse"].pk, catalogue["harbour"].pk}  # tags
    assert keyword_ids("Lindqvist") == [catalogue["maria"].pk]
    assert keyword_ids("lighthouses") == keyword_ids("lighthouse")  # stemmed on both engines
    assert keyword_ids("zeppelin") == []


def test_keywords_take_websearch_syntax(catalogue):
    assert keyword_ids('"garden chair"') == [catalogue["sku"].pk]
    assert keyword_ids('"chair garden"') == []
    assert set(keyword_ids("teak -table")) == {catalogue["sku"].pk}
    # Only an exclusion: never the images holding the word (SQLite finds nothing by words then;
    # PostgreSQL every other image).
    pictures = {image.pk for name, image in catalogue.items() if name.startswith("filler")}
    assert not pictures & set(keyword_ids("-picture"))
    assert set(keyword_ids("Lindqvist or lighthouse")) == {catalogue["maria"].pk, catalogue["lighthouse"].pk}
    # Every word first; when that finds nothing, any of them (a sentence still finds the boats).
    assert keyword_ids("a photo of fishing boats")[0] == catalogue["harbour"].pk
    assert keyword_ids('"unbalanced quote') == [] and keyword_ids("AND OR NOT ( ) * ^") == []


def test_code_and_exact_title_are_exact_matches(catalogue):
    candidates = keywords.keyword_ranking("SKU-10482", 50)
    assert candidates[0][0] == catalogue["sku"].pk and catalogue["other_sku"].pk not in dict(candidates)
    assert keywords.exact_matches("SKU-10482", candidates) == {catalogue["sku"].pk}
    assert keywords.exact_matches("sku-10482", candidates) == {catalogue["sku"].pk}
    assert keywords.exact_matches("old   LIGHTHOUSE", keywords.keyword_ranking("old lighthouse", 50)) == {catalogue["lighthouse"].pk}
    assert keywords.exact_matches("lighthouse", keywords.keyword_ranking("lighthouse", 50)) == set()  # a word, not the title


def test_a_sentence_found_by_any_of_its_words_is_not_read_for_an_exact_title(catalogue):
    """A title equal to the query holds every word of it: when only the any-word fallback
    answers, no title can be exact, and the rows are not read for one."""
    whole = keywords.keyword_ranking("old lighthouse", 50)
    fallback = keywords.keyword_ranking("old lighthouse zeppelin", 50)
    assert whole.every_word and not fallback.every_word
    assert catalogue["lighthouse"].pk in dict(fallback)
    with CaptureQueriesContext(connection) as queries:
        assert keywords.exact_matches("old lighthouse zeppelin", fallback) == set()
    assert len(queries) == 0
    # The same hits from the whole query are read (the title is not this query, so none is exact).
    with CaptureQueriesContext(connection) as queries:
        assert keywords.exact_matches("old lighthouse zeppelin", keywords.KeywordRanking(fallback, every_word=True)) == set()
    assert len(queries) == 1 and "ocr_text" not in queries[0]["sql"]  # a sentence is no code: titles only


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's GIN index")
def test_postgres_matches_through_the_gin_index_and_ranks_the_stored_document(catalogue):
    """Ranking reads each match's stored document; recomputing it from the row (the parser and
    the stemmer per match) cost ~120 ms for 10,000 matches at a million images."""
    with CaptureQueriesContext(connection) as captured:
        assert keyword_ids("lighthouse") == [catalogue["lighthouse"].pk]
    (ranking,) = [query["sql"] for query in captured if "ts_rank" in query["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (VERBOSE) {ranking}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "gallery_image_keywords_gin" in plan and "keyword_document" in plan, plan
    assert "to_tsvector" not in plan, plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one statement (SQLite: no round trips to save)")
def test_on_postgres_a_sentences_fallbacks_are_one_statement_that_stops_at_the_first_that_finds(catalogue):
    """Every word, then any word: one statement, not a round trip each; an attempt after one
    that found something scans nothing."""
    keywords._postgres_word_statistics()  # read once per process
    with CaptureQueriesContext(connection) as captured:
        whole = keywords.keyword_ranking("old lighthouse", 50)
        fallback = keywords.keyword_ranking("old lighthouse zeppelin", 50)
    assert whole.every_word and [pk for pk, _ in whole] == [catalogue["lighthouse"].pk]
    assert not fallback.every_word and [pk for pk, _ in fallback] == [catalogue["lighthouse"].pk]
    rankings = [query["sql"] for query in captured if "ts_rank" in query["sql"]]
    assert len(rankings) == len(captured) == 2, [query["sql"] for query in captured]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {rankings[0]}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # The any-word attempt's scans wait on the every-word one's rows: never run here.
    fallback_plan = plan.split("CTE r1")[1].split("->  Append")[0]
    scans = [line for line in fallback_plan.splitlines() if " Scan on " in line and "CTE Scan" not in line or "Index Scan" in line]
    assert "One-Time Filter" in fallback_plan and scans and all("(never executed)" in line for line in scans), plan
    assert keywords.keyword_ranking("zeppelin airship", 50) == [] and keywords.keyword_ranking("zeppelin airship", 50).every_word is False


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's parser")
def test_on_postgres_a_word_with_a_digit_is_its_own_lexeme_without_asking(db):
    """Numbers and codes ("2019", "a7") are their own lexemes, lower-cased, in the english
    configuration: no query for them, and the rule agrees with to_tsvector; a word like a number
    in scientific notation, or a plain word, is asked."""
    keywords.forget_statistics()
    own = ["2019", "0012", "A7", "r5F3a", "1st", "3d", "abc123def", "12345678901234567890123", "e1", "1e"]
    differ = ["12e5x", "lighthouses", "img_2041", "x\u00b21"]  # lexemes other than the word, lower-cased
    asked = [*differ, "1E5"]  # left to the database: it starts as "12e5x" does
    with CaptureQueriesContext(connection) as captured:
        assert keywords._postgres_lexemes(own) == [(word.lower(),) for word in own]
    assert len(captured) == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT w, tsvector_to_array(to_tsvector('english', w)) FROM unnest(%s::text[]) AS t(w)", [own + asked])
        parsed = dict(cursor.fetchall())
    assert all(parsed[word] == [word.lower()] for word in own), parsed
    assert all(parsed[word] != [word.lower()] for word in differ), parsed  # the rule must not claim these
    with CaptureQueriesContext(connection) as captured:
        assert keywords._postgres_lexemes(asked) == [tuple(parsed[word]) for word in asked]
    assert len(captured) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's stored document")
def test_postgres_stored_document_follows_every_write(catalogue, upload):
    """The column is generated from the row: title, tags, description and text read, through
    every service that writes them, give the document the index of migration 0012 was built on."""
    from django.contrib.postgres.search import SearchVectorField
    from django.db.models.expressions import RawSQL

    image = catalogue["lighthouse"]
    curation.image_update(image=image, title="Red harbour light", description="Seen from the pier.")
    tags.tags_set(image=image, names=["coast", "night"])
    Image.objects.filter(pk=image.pk).update(ocr_text="NO ENTRY", ocr_terms="lookalike0")
    upload(7, title="A new upload")
    before = import_module("gallery.migrations.0012_text_in_pictures").keyword_vector(with_text=True)
    stored = RawSQL(f'"{Image._meta.db_table}"."{keywords.DOCUMENT_COLUMN}"', [], output_field=SearchVectorField())
    documents = Image.objects.annotate(expected=before, stored=stored).values_list("pk", "stored", "expected")
    assert [(pk, stored) for pk, stored, expected in documents if stored != expected] == []
    assert keyword_ids("harbour pier coast entry") == [image.pk]  # each field's new words, all four


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 table")
def test_sqlite_fts_rows_follow_the_services(catalogue):
    def fts_row(pk):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT title, tags, description FROM {keywords.FTS_TABLE} WHERE rowid = %s", [pk])
            return cursor.fetchone()

    image = catalogue["lighthouse"]
    assert fts_row(image.pk) == ("Old lighthouse", "seaside", "A lighthouse at the harbour entrance.")
    curation.image_delete(image=image)
    assert fts_row(image.pk) is None



@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 table (PostgreSQL: the test below)")
def test_a_word_in_more_images_than_are_ranked_ranks_only_its_newest_matches(catalogue, monkeypatch):
    """BM25 scores every match; a word in more than RANKED_MATCHES_MAX images ranks only the
    newest that many (1.2 s -> 37 ms for a word in every title of a million images). A rarer
    word is still found wherever it is."""
    monkeypatch.setattr(keywords, "RANKED_MATCHES_MAX", 3)
    pictures = sorted(image.pk for name, image in catalogue.items() if name.startswith("filler"))  # "Picture 6".."12"
    assert {pk for pk, _ in keywords.keyword_ranking("picture", 320)} == set(pictures[-3:])
    assert [pk for pk, _ in keywords.keyword_ranking("picture 6", 320)] == [catalogue["filler6"].pk]  # the oldest
    assert [pk for pk, _ in keywords.keyword_ranking("lighthouse", 320)] == [catalogue["lighthouse"].pk]
    # No image has both words: the any-word fallback leaves the too-common one out first, so the
    # older lighthouse is found (within "picture or lighthouse" it fell outside the newest 3)...
    assert [pk for pk, _ in keywords.keyword_ranking("picture lighthouse", 320)] == [catalogue["lighthouse"].pk]
    # ...and takes every word when the rare ones find nothing.
    assert {pk for pk, _ in keywords.keyword_ranking("picture zeppelin", 320)} == set(pictures[-3:])
    # Each word's matches are counted (to one past the bound) once; a process keeps the counts,
    # so the same words again cost the ranking query alone.
    keywords.keyword_ranking("old lighthouse", 320)
    with CaptureQueriesContext(connection) as captured:
        assert [pk for pk, _ in keywords.keyword_ranking("old lighthouse", 320)] == [catalogue["lighthouse"].pk]
    assert len(captured) == 1 and "bm25" in captured[0]["sql"], [query["sql"] for query in captured]
    monkeypatch.setattr(keywords, "RANKED_MATCHES_MAX", 10_000)
    assert {pk for pk, _ in keywords.keyword_ranking("picture", 320)} == set(pictures)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 table")
def test_a_word_too_common_to_rank_orders_its_newest_matches_by_field_without_bm25(db, monkeypatch):
    """BM25 counts every image holding each word of the query before it scores one (its rarity):
    for a word in every title of a million images, 21 ms of every search. A query with a word in
    more than RANKED_MATCHES_MAX images orders the newest that many by the field they are in
    (title, tags, description, any), newest first within one, with walks that stop there."""
    title = add(30, "Kite festival")  # the oldest: outside the newest 3
    description = add(31, "Beach", "A kite in the sky.")
    tagged = add(32, "Dunes", "Kite and sand.", "kite")  # in the tags and the description: once, as tagged
    newest = add(33, "Sky", "Kite surfing.")
    monkeypatch.setattr(keywords, "RANKED_MATCHES_MAX", 3)
    with CaptureQueriesContext(connection) as captured:
        ranked = keywords.keyword_ranking("kite", 320)
    assert [pk for pk, _ in ranked] == [tagged.pk, newest.pk, description.pk]
    assert not any("bm25" in query["sql"] for query in captured), [query["sql"] for query in captured]
    # With a rarer word beside it: the images holding both, by the same rule (both words in one
    # description before a title with one and a description with the other).
    assert [pk for pk, _ in keywords.keyword_ranking("kite sky", 320)] == [description.pk, newest.pk]
    # The bound counts the query's matches: without the tagged one, the title is among the newest 3.
    assert [pk for pk, _ in keywords.keyword_ranking("kite -sand", 320)] == [title.pk, newest.pk, description.pk]
    monkeypatch.setattr(keywords, "RANKED_MATCHES_MAX", 10_000)  # rare enough for BM25: the title first
    assert [pk for pk, _ in keywords.keyword_ranking("kite", 320)][0] == title.pk


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's statistics (SQLite: the test above)")
def test_on_postgres_a_word_too_common_to_rank_ranks_about_its_newest_matches(catalogue, monkeypatch):
    """PostgreSQL ranks every match it is given (3.5 s for a word in every title of 1M images);
    a word ANALYZE counts in more than RANKED_MATCHES_MAX images ranks only the newest images
    that should hold about that many. A query that needs a rarer word is not bounded."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE gallery_image")
    keywords.forget_statistics()
    monkeypatch.setattr(keywords, "RANKED_MATCHES_MAX", 3)
    pictures = sorted(image.pk for name, image in catalogue.items() if name.startswith("filler"))  # 7 of 12
    found = sorted(pk for pk, _ in keywords.keyword_ranking("picture", 320))
    assert 3 <= len(found) < len(pictures) and found == pictures[-len(found):]  # the newest ones
    # A word said twice ("picture or pictures": one lexeme) holds no more images than once.
    assert keywords._postgres_newest_bound("picture or pictures") == keywords._postgres_newest_bound("picture") is not None
    assert [pk for pk, _ in keywords.keyword_ranking("picture 6", 320)] == [catalogue["filler6"].pk]  # the oldest
    assert sorted(pk for pk, _ in keywords.keyword_ranking("lighthouse or picture", 320))[0] > catalogue["lighthouse"].pk
    # The plain words' any-word fallback leaves the too-common word out first: the lighthouse is
    # found (an explicit "or", above, is ranked as asked: the newest matches of either).
    assert [pk for pk, _ in keywords.keyword_ranking("picture lighthouse", 320)] == [catalogue["lighthouse"].pk]
    with CaptureQueriesContext(connection) as queries:
        found = sorted(pk for pk, _ in keywords.keyword_ranking("picture zeppelin", 320))
    assert 3 <= len(found) < len(pictures) and found == pictures[-len(found):]
    # Each word's lexemes are asked once per process ("picture" above): the three questions
    # about the words' shares (every word, which are too common, any word) cost one query; the
    # newest id, for the any-word attempt's bound, one more; the attempts, one statement.
    asked = [query["sql"] for query in queries]
    assert sum("to_tsvector" in sql for sql in asked) == 1 and sum("max(id)" in sql for sql in asked) == 1, asked
    assert sum("ts_rank" in sql for sql in asked) == 1 and len(asked) == 3, asked
    # Both attempts bounded (every word and any word too common): the newest id asked once.
    with CaptureQueriesContext(connection) as queries:
        keywords.keyword_ranking("picture picture", 320)
    assert [sum(part in query["sql"] for query in queries) for part in ("max(id)", "ts_rank")] == [1, 1], [q["sql"] for q in queries]
    monkeypatch.setattr(keywords, "RANKED_MATCHES_MAX", 10_000)
    assert sorted(pk for pk, _ in keywords.keyword_ranking("picture", 320)) == pictures

# --- search(): fused, switched, exact first -------------------------------------------------


def test_a_code_puts_its_image_first(catalogue):
    for mode in ("hybrid", "keywords"):
        hits = list(search.search(search.text_query("SKU-10482", ranking_name=mode)))
        assert hits[0].image.pk == catalogue["sku"].pk and hits[0].matched in (WORDS, BOTH)
    title_hits = list(search.search(search.text_query("Old lighthouse")))
    assert title_hits[0].image.pk == catalogue["lighthouse"].pk


def test_hybrid_keeps_every_clip_hit_and_reports_cosines(catalogue):
    clip_hits = list(search.search(search.text_query("harbour", ranking_name="clip")))
    hybrid_hits = list(search.search(search.text_query("harbour")))
    assert {hit.image.pk for hit in clip_hits} == {hit.image.pk for hit in hybrid_hits} == {i.pk for i in catalogue.values()}
    assert all(hit.matched == LOOKS for hit in clip_hits)
    cosine = {hit.image.pk: hit.score for hit in clip_hits}
    words = {catalogue["lighthouse"].pk, catalogue["harbour"].pk}
    assert {hit.image.pk for hit in hybrid_hits if hit.matched == BOTH} == words
    assert {hit.image.pk for hit in hybrid_hits[:2]} == words  # found twice: ahead of the rest
    assert all(hit.score == pytest.approx(cosine[hit.image.pk]) for hit in hybrid_hits)  # the score stays a cosine


def test_keyword_ranking_needs_no_index_and_skips_hidden_images(db):
    shown = add(1, "Red kite over the valley", tag_text="birds")
    hidden = add(2, "Red kite nest", tag_text="birds")
    curation.image_update(image=hidden, hidden=True)
    with pytest.raises(search.NotReady):
        search.search(search.text_query("red kite"))  # CLIP has nothing to search yet
    hits = list(search.search(search.text_query("red kite", ranking_name="keywords")))
    assert [(hit.image.pk, hit.score, hit.matched) for hit in hits] == [(shown.pk, None, WORDS)]


def test_search_ranking_setting_is_the_default(catalogue, settings):
    settings.SEARCH_RANKING = "keywords"
    assert [hit.image.pk for hit in search.search(search.text_query("Lindqvist"))] == [catalogue["maria"].pk]
    settings.SEARCH_RANKING = "clip"
    assert len(search.search(search.text_query("Lindqvist"))) == len(catalogue)
    with pytest.raises(search.BadQuery):
        search.text_query("x", ranking_name="bm25")


def test_image_and_similar_queries_stay_clip_only(catalogue):
    results = search.search(search.SearchQuery.similar(catalogue["sku"]))
    assert all(hit.matched == LOOKS for hit in results) and results[0].image.pk == catalogue["sku"].pk


# --- pages and API --------------------------------------------------------------------------


def test_search_page_shows_matched_and_switches_ranking(client, catalogue):
    page = client.get("/search/", {"q": "SKU-10482"}).content.decode()
    grid = page[page.index('id="results"'):]
    assert grid.index('href="/images/') == grid.index(f'href="/images/{catalogue["sku"].pk}/"')
    # Twelve images: CLIP's candidates are all of them, so the code's word match is in both rankings.
    assert 'data-matched="both"' in page
    assert 'id="ranking-switch"' in page and "ranking=clip" in page and "ranking=keywords" in page
    words_only = client.get("/search/", {"q": "seaside", "ranking": "keywords"}).content.decode()
    assert words_only.count('data-matched="words"') == 2 and 'data-matched="looks"' not in words_only
    looks_only = client.get("/search/", {"q": "seaside", "ranking": "clip"}).content.decode()
    assert 'data-matched="words"' not in looks_only and 'data-matched="looks"' in looks_only
    bad = client.get("/search/", {"q": "seaside", "ranking": "magic"})
    assert bad.status_code == 400 and "Unknown ranking" in bad.content.decode()


def test_api_search_says_what_matched(catalogue):
    api = APIClient()
    body = api.get(f"{API}/search/", {"q": "SKU-10482"}).json()
    assert body["results"][0]["image"]["id"] == catalogue["sku"].pk
    assert body["results"][0]["matched"] == "both" and body["results"][0]["image"]["tags"] == ["furniture", "garden"]
    words = api.get(f"{API}/search/", {"q": "seaside", "ranking": "keywords"}).json()["results"]
    assert {row["image"]["id"] for row in words} == {catalogue["lighthouse"].pk, catalogue["harbour"].pk}
    assert all(row["matched"] == "words" and row["score"] is None for row in words)
    looks = api.get(f"{API}/search/", {"q": "seaside", "ranking": "clip"}).json()["results"]
    assert all(row["matched"] == "looks" and isinstance(row["score"], float) for row in looks)
    assert api.get(f"{API}/search/", {"q": "x", "ranking": "magic"}).status_code == 400


def test_gallery_and_api_filter_by_tag(client, catalogue):
    page = client.get("/", {"tag": "Seaside"}).content.decode()
    shown = {pk for pk in (i.pk for i in catalogue.values()) if f'href="/images/{pk}/"' in page}
    assert shown == {catalogue["lighthouse"].pk, catalogue["harbour"].pk} and "Tagged “seaside”" in page
    assert "No photos carry this tag" in client.get("/", {"tag": "nope"}).content.decode()
    api = APIClient()
    listed = api.get(f"{API}/images/", {"tag": "furniture"}).json()
    assert {row["id"] for row in listed["results"]} == {catalogue["sku"].pk, catalogue["other_sku"].pk}
    assert api.get(f"{API}/images/", {"tag": "nope"}).json()["results"] == []


def test_image_page_shows_its_tags(client, catalogue):
    page = client.get(catalogue["harbour"].get_absolute_url()).content.decode()
    assert 'href="/?tag=boats"' in page and 'href="/?tag=seaside"' in page


def test_members_tag_at_upload_on_the_page_and_the_api(client, member):
    client.force_login(User.objects.get(username="member"))
    response = client.post("/upload/", {"files": [as_upload(image_bytes(40))], "title": "Kite", "description": "",
                                        "tags": "Birds,  sky , birds"})
    assert response.status_code == 302
    assert sorted(Image.objects.get(title="Kite").tags.values_list("name", flat=True)) == ["birds", "sky"]
    created = member.post(f"{API}/images/", {"file": as_upload(image_bytes(41)), "tags": "Mountains, snow"}, format="multipart")
    assert created.status_code == 201 and created.json()["tags"] == ["mountains", "snow"]
    assert keyword_ids("snow") == [created.json()["id"]]
    too_long = member.post(f"{API}/images/", {"file": as_upload(image_bytes(42)), "tags": "x" * 60}, format="multipart")
    assert too_long.status_code == 400 and "tags" in too_long.json() and Image.objects.count() == 2


def test_only_curators_change_tags_later(member, curator, catalogue):
    image = catalogue["harbour"]
    refused = member.patch(f"{API}/images/{image.pk}/", {"tags": ["mine"]}, format="json")
    assert refused.status_code == 403 and sorted(image.tags.values_list("name", flat=True)) == ["boats", "seaside"]
    changed = curator.patch(f"{API}/images/{image.pk}/", {"tags": ["Ships", "dawn"]}, format="json")
    assert changed.status_code == 200 and changed.json()["tags"] == ["dawn", "ships"]
    assert keyword_ids("ships") == [image.pk] and image.pk not in keyword_ids("seaside")  # full-text rows follow
    curator.patch(f"{API}/images/{image.pk}/", {"title": "Trawlers"}, format="json")
    assert keyword_ids("trawlers") == [image.pk] and image.pk not in keyword_ids("fishing")
    assert curator.patch(f"{API}/images/{image.pk}/", {"tags": "a, " + "b" * 80}, format="json").status_code == 400
    assert sorted(Image.objects.get(pk=image.pk).tags.values_list("name", flat=True)) == ["dawn", "ships"]


def test_admin_autocompletes_tags_and_bulk_adds_and_removes(admin_client, catalogue):
    found = admin_client.get(
        "/admin/autocomplete/", {"app_label": "gallery", "model_name": "image", "field_name": "tags", "term": "sea"}
    ).json()
    assert [row["text"] for row in found["results"]] == ["seaside"]
    chosen = [str(catalogue[name].pk) for name in ("maria", "filler6")]
    admin_client.post("/admin/gallery/image/", {"action": "add_tag", "tag": "Studio", "_selected_action": chosen})
    assert set(Tag.objects.get(name="studio").images.values_list("pk", flat=True)) == {int(pk) for pk in chosen}
    assert set(keyword_ids("studio")) == {int(pk) for pk in chosen}
    admin_client.post("/admin/gallery/image/", {"action": "remove_tag", "tag": "studio", "_selected_action": chosen[1:]})
    assert list(Tag.objects.get(name="studio").images.values_list("pk", flat=True)) == [int(chosen[0])]
    assert keyword_ids("studio") == [int(chosen[0])]  # "studio" is also in Maria's description


def test_admin_edit_and_tag_rename_keep_search_in_step(admin_client, catalogue):
    image = catalogue["maria"]
    seaside = Tag.objects.get(name="seaside")
    response = admin_client.post(
        f"/admin/gallery/image/{image.pk}/change/",
        {"title": "Portrait", "description": "Maria Lindqvist in her studio.", "tags": [str(seaside.pk)]},
    )
    assert response.status_code == 302 and list(image.tags.values_list("name", flat=True)) == ["seaside"]
    assert image.pk in keyword_ids("seaside")
    refused = admin_client.post(f"/admin/gallery/tag/{seaside.pk}/change/", {"name": "coast, sea"})
    assert refused.status_code == 200 and "cannot hold a comma" in refused.content.decode()  # one tag, one name
    admin_client.post(f"/admin/gallery/tag/{seaside.pk}/change/", {"name": "Coast"})
    assert keyword_ids("seaside") == [] and image.pk in keyword_ids("coast")
    # Pages and the API read the names from the row (Image.tag_name_list): the rename is there.
    assert admin_client.get(f"/api/v1/images/{image.pk}/").json()["tags"] == ["coast"]
    admin_client.post(f"/admin/gallery/tag/{seaside.pk}/delete/", {"post": "yes"})
    assert keyword_ids("coast") == [] and not Tag.objects.filter(name="coast").exists()


def test_tag_names_are_normalised_and_merged_by_slug(db):
    image = add(1, "One")
    assert [tag.name for tag in tags.tags_set(image=image, names="New York, new-york, NEW  york")] == ["new york"]
    assert tags.tag_lookup("new-york").name == "new york" and tags.tag_lookup("???") is None
    with pytest.raises(tags.InvalidInput):
        tags.tag_names_parse("!!!")
    with pytest.raises(tags.InvalidInput):
        tags.tag_names_parse([f"t{n}" for n in range(tags.MAX_TAGS_PER_IMAGE + 1)])


def test_a_but_not_query_is_ranked_by_clip_alone_as_pins_see_it(catalogue):
    """The full-text index cannot match "but not" words: such a query is CLIP's alone, by the
    one rule of what a plain text query is (SearchQuery.plain_text), which pins use too."""
    query = search.SearchQuery.build(text="seaside", negative_text="boats")
    assert query.plain_text == "" and search.text_query("seaside").plain_text == "seaside"
    assert {hit.matched for hit in search.search(query)} == {"looks"}


def test_search_reads_the_results_dates_only_to_sort_by_them(catalogue):
    """The visibility check of the ranked ids reads their dates for a date order only (converting
    ~300 of them per search cost ~1 ms for nothing under the relevance order)."""

    def visibility_columns(options):
        with CaptureQueriesContext(connection) as captured:
            search.search(search.text_query("lighthouse"), options)
        # the one visibility query (on SQLite, for the relevance order, its own SQL names the index)
        (check,) = [query["sql"] for query in captured if "hidden" in query["sql"] and "gallery_image_fts" not in query["sql"]]
        return check.split(" FROM ")[0]

    assert "taken_at" not in visibility_columns(search.ResultOptions())
    assert "taken_at" in visibility_columns(search.ResultOptions(relevant=True, sort="newest"))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite counts a word's matches itself")
def test_sqlite_keeps_each_words_count_and_drops_the_least_recently_used_past_its_size(catalogue):
    """A word's matches are counted once per period, and a process that has seen more words than
    it keeps drops the least recently used counts, not all of them at once."""
    keywords.keyword_ranking("lighthouse harbour", 10)
    with CaptureQueriesContext(connection) as again:
        keywords.keyword_ranking("lighthouse harbour", 10)
    assert not [query for query in again if "count(*)" in query["sql"]]  # counted the first time only
    held, bound = keywords._counts, keywords.RANKED_MATCHES_MAX
    for n in range(held.maxsize):
        held[(f'"filler{n}"', bound)] = 0
    keywords.keyword_ranking("zeppelin", 10)  # a word not counted yet
    assert len(held) == held.maxsize and held[('"zeppelin"', bound)] == 0
    assert ('"filler0"', bound) not in held and held[(f'"filler{held.maxsize - 1}"', bound)] == 0

"""Curator pins: images first (in order) or never for one text query, in search on pages, API
and command alike; kept in the admin and over the API by curators only."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from gallery import search
from gallery.catalogue import curation, tombstones
from gallery.models import Image, PinnedImage, QueryPin, VisibilityGeneration
from gallery.search import pins
from tests.searching import by_text, similar

pytestmark = pytest.mark.django_db
API = "/api/v1/pins/"
QUERY = "red shoes"


def curator_user(name="curator", *, staff=True):
    user = User.objects.create_user(name, password="pw-curator-123", is_staff=staff)
    user.user_permissions.add(Permission.objects.get(codename="change_image"))
    return user


def api_as(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def pin(query=QUERY, pinned=(), excluded=()):
    return pins.pin_save(query=query, pinned=list(pinned), excluded=list(excluded))


def ranked_ids(results):
    return [hit.image.pk for hit in results]


@pytest.mark.parametrize("text", [" Red  Shoes ", "RED SHOES", "red\tshoes\n", "red shoes"])
def test_queries_match_after_normalising_case_and_spaces(text):
    assert pins.normalise_query(text) == QUERY


def test_a_query_without_a_pin_costs_one_lookup_of_the_id_alone():
    """Without the visibility generation (a live engine, a search by words alone), a text
    search asks: one statement by the unique column, reading no pin's row."""
    pin(pinned=[])
    ranked = [(1, 0.5), (2, 0.4)]
    with CaptureQueriesContext(connection) as queries:
        assert pins.apply_pins("blue shoes", ranked) == ranked
    assert len(queries) == 1
    assert re.fullmatch(r'SELECT "id" FROM "gallery_querypin" WHERE "query" = .+', queries[0]["sql"]), queries[0]["sql"]


def test_a_search_knows_which_queries_have_a_pin_without_asking_and_sees_every_change(indexed_gallery):
    """With the visibility generation read beside the index version, a process keeps the pinned
    queries: a text search without a pin asks nothing about pins. A pin made, renamed or removed
    (through the service, or plain SQL as another process might) changes the generation: the
    next search sees it."""
    order = ranked_ids(by_text(QUERY))
    with CaptureQueriesContext(connection) as queries:
        assert ranked_ids(by_text(QUERY)) == order
    assert not [query["sql"] for query in queries if "querypin" in query["sql"]], [query["sql"] for query in queries]
    made = pin(pinned=[order[-1]])
    assert ranked_ids(by_text(QUERY))[0] == order[-1]
    # Changing its images saves the pin with its query unchanged: visibility is not read again.
    generation = VisibilityGeneration.objects.get().generation
    pins.pin_save(query=QUERY, pinned=[order[-3], order[-1]], pin=made)
    assert VisibilityGeneration.objects.get().generation == generation
    assert ranked_ids(by_text(QUERY))[:2] == [order[-3], order[-1]]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE gallery_querypin SET query = %s WHERE id = %s", ["blue shoes", made.pk])
    assert ranked_ids(by_text(QUERY)) == order and ranked_ids(by_text("blue shoes"))[:2] == [order[-3], order[-1]]
    with connection.cursor() as cursor:  # its placements left behind: a pin still held would place them
        cursor.execute("DELETE FROM gallery_querypin")
    hits = list(by_text("blue shoes"))
    assert len(hits) == 20 and not any(hit.pinned for hit in hits)
    PinnedImage.objects.all().delete()
    QueryPin.objects.bulk_create([QueryPin(query=QUERY)])  # no save(), no signal: the trigger alone
    PinnedImage.objects.bulk_create([PinnedImage(pin=QueryPin.objects.get(query=QUERY), image_id=order[-2], position=0)])
    assert ranked_ids(by_text(QUERY))[0] == order[-2]


def test_without_the_triggers_a_search_asks_about_pins_each_time(indexed_gallery):
    """A database whose pin triggers are missing (a table rebuilt, migrate not run since)
    would not say when pins change: the process holds none and asks."""
    tombstones.drop_triggers()
    try:
        with CaptureQueriesContext(connection) as queries:
            by_text(QUERY)
        assert [query["sql"] for query in queries if re.search(r'FROM "gallery_querypin" WHERE "query" = ', query["sql"])]
        made = pin(pinned=[indexed_gallery[0].pk])
        assert ranked_ids(by_text(QUERY))[0] == made.pinned_ids()[0]
    finally:
        tombstones.ensure_triggers()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's triggers can be disabled")
def test_with_a_pin_trigger_disabled_a_search_asks_about_pins_each_time(indexed_gallery):
    """A disabled trigger (``ALTER TABLE ... DISABLE TRIGGER``) fires no more than a dropped one."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE gallery_querypin DISABLE TRIGGER query_pin_added")
    with CaptureQueriesContext(connection) as queries:
        by_text(QUERY)
    assert [query["sql"] for query in queries if re.search(r'FROM "gallery_querypin" WHERE "query" = ', query["sql"])]
    made = pin(pinned=[indexed_gallery[0].pk])
    assert ranked_ids(by_text(QUERY))[0] == made.pinned_ids()[0]


def test_pinned_images_come_first_in_order_and_excluded_never(indexed_gallery):
    before = by_text(QUERY)
    order = ranked_ids(before)
    scores = {hit.image.pk: hit.score for hit in before}
    first, second, dropped = order[-1], order[5], order[0]  # the last, a middle one, and the best
    pin(" Red  SHOES ", pinned=[first, second], excluded=[dropped])

    after = by_text("  red shoes")
    hits = list(after)
    assert [hit.image.pk for hit in hits[:2]] == [first, second]
    assert [hit.pinned for hit in hits[:3]] == [True, True, False]
    assert hits[0].score == pytest.approx(scores[first]) and hits[1].score == pytest.approx(scores[second])
    assert dropped not in ranked_ids(after) and len(after) == 19
    # The rest keep search's order.
    assert ranked_ids(after)[2:] == [pk for pk in order if pk not in (first, second, dropped)]
    # Other queries are untouched.
    assert dropped in ranked_ids(by_text("red shoe")) and len(by_text("blue shoes")) == 20
    assert not any(hit.pinned for hit in by_text("blue shoes"))


def test_a_pinned_image_search_did_not_rank_comes_first_without_a_score(indexed_gallery, settings):
    settings.SEARCH_MAX_RESULTS = 5
    unranked = next(image.pk for image in indexed_gallery if image.pk not in ranked_ids(by_text(QUERY)))
    pin(pinned=[unranked])
    results = by_text(QUERY)
    assert results[0].image.pk == unranked and results[0].score is None and results[0].pinned
    assert len(results) == 6 and results.best_score == max(hit.score for hit in list(results)[1:])
    out = call_command_output("search", QUERY)
    assert re.search(rf"^\s+1\s+pinned\s+#{unranked}\b", out, re.MULTILINE)


def call_command_output(*args):
    import io

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_hidden_and_deleted_pinned_images_are_skipped(indexed_gallery, django_capture_on_commit_callbacks):
    order = ranked_ids(by_text(QUERY))
    hidden, deleted, kept = order[-1], order[-2], order[-3]
    pin(pinned=[hidden, deleted, kept])
    curation.image_update(image=Image.objects.get(pk=hidden), hidden=True)
    with django_capture_on_commit_callbacks(execute=True):
        curation.image_delete(image=Image.objects.get(pk=deleted))
    results = by_text(QUERY)
    assert ranked_ids(results)[0] == kept and hidden not in ranked_ids(results) and len(results) == 18
    assert QueryPin.objects.get().pinned_ids() == [hidden, kept]  # the deleted row left the pin


def test_pins_apply_to_text_queries_only(indexed_gallery):
    image = indexed_gallery[3]
    baseline_similar = ranked_ids(similar(image))
    baseline_negative = ranked_ids(search.search(search.SearchQuery.build(text=QUERY, negative_text="blue")))
    order = ranked_ids(by_text(QUERY))
    pin(pinned=[order[-1]], excluded=[order[0]])
    assert ranked_ids(similar(image)) == baseline_similar
    assert ranked_ids(search.search(search.SearchQuery.build(text=QUERY, negative_text="blue"))) == baseline_negative
    assert ranked_ids(by_text(QUERY))[0] == order[-1]


def test_the_search_page_shows_pinned_images_first(client, indexed_gallery):
    order = ranked_ids(by_text(QUERY))
    pin(pinned=[order[-1]], excluded=[order[0]])
    html = client.get("/search/", {"q": "Red Shoes"}).content.decode()
    links = [int(pk) for pk in re.findall(r'href="/images/(\d+)/" class="gallery-link"', html)]
    assert links[0] == order[-1] and order[0] not in links
    assert "#1 · pinned" in html


def test_the_api_marks_pinned_hits(client, indexed_gallery, settings):
    settings.SEARCH_MAX_RESULTS = 5
    order = ranked_ids(by_text(QUERY))
    unranked = next(image.pk for image in indexed_gallery if image.pk not in order)
    pin(pinned=[unranked, order[2]], excluded=[order[0]])
    rows = client.get("/api/v1/search/", {"q": "RED shoes"}).json()["results"]
    assert [(row["image"]["id"], row["pinned"]) for row in rows[:3]] == [(unranked, True), (order[2], True), (order[1], False)]
    assert rows[0]["score"] is None and isinstance(rows[1]["score"], float)
    assert order[0] not in [row["image"]["id"] for row in rows]


# --- The API ---------------------------------------------------------------------------------


def test_curators_create_read_change_and_delete_pins_over_the_api(indexed_gallery):
    curator = curator_user()
    api = api_as(curator)
    a, b, c = (image.pk for image in indexed_gallery[:3])
    created = api.post(API, {"query": "  Red   Shoes", "pinned": [b, a], "excluded": [c]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["query"], body["pinned"], body["excluded"], body["created_by"]) == (QUERY, [b, a], [c], "curator")
    assert body["created_at"] and body["updated_at"]
    pin_row = QueryPin.objects.get()
    assert pin_row.created_by == curator and pin_row.pinned_ids() == [b, a]

    assert api.get(API).json()["results"][0]["pinned"] == [b, a]
    assert api.get(API, {"query": "RED SHOES"}).json()["count"] == 1 and api.get(API, {"query": "blue"}).json()["count"] == 0
    assert api.get(f"{API}{pin_row.pk}/").json()["excluded"] == [c]

    changed = api.patch(f"{API}{pin_row.pk}/", {"pinned": [a, c], "excluded": []}, format="json")
    assert changed.status_code == 200 and changed.json()["pinned"] == [a, c] and changed.json()["query"] == QUERY
    assert QueryPin.objects.get().pinned_ids() == [a, c] and not QueryPin.objects.get().excluded.exists()
    assert ranked_ids(by_text(QUERY))[:2] == [a, c]

    renamed = api.patch(f"{API}{pin_row.pk}/", {"query": "Blue Shoes"}, format="json")
    assert renamed.json()["query"] == "blue shoes" and renamed.json()["pinned"] == [a, c]

    assert api.delete(f"{API}{pin_row.pk}/").status_code == 204
    assert not QueryPin.objects.exists() and not PinnedImage.objects.exists()


@pytest.mark.parametrize(
    "body, says",
    [
        ({"query": "   "}, "query"),
        ({"query": "x" * 301}, "query"),
        ({"query": QUERY, "pinned": ["IMG", "IMG"], "excluded": ["IMG"]}, "both pinned and excluded"),
        ({"query": QUERY, "pinned": [999999]}, "no images 999999"),
        ({"query": "Shoes"}, "already a pin"),
    ],
)
def test_bad_pins_are_refused_and_nothing_changes(indexed_gallery, body, says):
    real = indexed_gallery[0].pk
    body = {key: [real if pk == "IMG" else pk for pk in value] if isinstance(value, list) else value for key, value in body.items()}
    pin("shoes")
    response = api_as(curator_user()).post(API, body, format="json")
    assert response.status_code == 400 and says in response.content.decode()
    assert list(QueryPin.objects.values_list("query", flat=True)) == ["shoes"]


def test_only_curators_use_the_pins_api(db, anon_and_member):
    pin_row = pin("shoes")
    # Nobody signed in: 401 (the token's challenge comes first); a member without the permission: 403.
    for client, refused in zip(anon_and_member, (401, 403)):
        assert client.get(API).status_code == refused
        assert client.post(API, {"query": "x"}, format="json").status_code == refused
        assert client.delete(f"{API}{pin_row.pk}/").status_code == refused
    assert QueryPin.objects.count() == 1 and not QueryPin.objects.filter(query="x").exists()


@pytest.fixture
def anon_and_member(db):
    member = User.objects.create_user("member", password="pw-member-123", is_staff=True)  # staff, yet no permission
    return [APIClient(), api_as(member)]


# --- The admin -------------------------------------------------------------------------------

ADMIN = "/admin/gallery/querypin/"


def inline(rows, initial=0):
    data = {
        "placements-TOTAL_FORMS": str(len(rows)),
        "placements-INITIAL_FORMS": str(initial),
        "placements-MIN_NUM_FORMS": "0",
        "placements-MAX_NUM_FORMS": "1000",
    }
    for n, (image, position) in enumerate(rows):
        data[f"placements-{n}-image"] = str(image)
        data[f"placements-{n}-position"] = str(position)
    return data


def test_curators_keep_pins_in_the_admin(client, indexed_gallery):
    curator = curator_user()
    client.force_login(curator)
    a, b, c = (image.pk for image in indexed_gallery[:3])
    assert client.get(ADMIN + "add/").status_code == 200
    response = client.post(ADMIN + "add/", {"query": " Red  SHOES ", "excluded": [c], **inline([(b, 1), (a, 2)])})
    assert response.status_code == 302, response.content.decode()[:3000]
    saved = QueryPin.objects.get()
    assert (saved.query, saved.pinned_ids(), list(saved.excluded.values_list("pk", flat=True))) == (QUERY, [b, a], [c])
    assert saved.created_by == curator
    assert ranked_ids(by_text("red shoes"))[:2] == [b, a]

    listing = client.get(ADMIN).content.decode()
    assert QUERY in listing and "curator" in listing
    # The image picker searches the gallery (autocomplete), for curators.
    found = client.get(
        "/admin/autocomplete/",
        {"app_label": "gallery", "model_name": "pinnedimage", "field_name": "image", "term": indexed_gallery[14].title},
    ).json()
    assert [row["id"] for row in found["results"]] == [str(indexed_gallery[14].pk)]


def test_the_admin_refuses_an_image_both_pinned_and_excluded(client, indexed_gallery):
    client.force_login(curator_user())
    a = indexed_gallery[0].pk
    response = client.post(ADMIN + "add/", {"query": QUERY, "excluded": [a], **inline([(a, 0)])})
    assert response.status_code == 200 and "both pinned and excluded" in response.content.decode()
    assert not QueryPin.objects.exists()


def test_the_admin_refuses_a_second_pin_for_the_same_normalised_query(client, indexed_gallery):
    pin()
    client.force_login(curator_user())
    response = client.post(ADMIN + "add/", {"query": "RED  shoes", **inline([])})
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert QueryPin.objects.count() == 1


def test_staff_without_change_image_cannot_see_pins(client, db):
    pin()
    client.force_login(User.objects.create_user("staff", password="pw-staff-123", is_staff=True))
    assert client.get(ADMIN).status_code == 403
    assert client.post(ADMIN + "add/", {"query": "x", **inline([])}).status_code == 403
    assert list(QueryPin.objects.values_list("query", flat=True)) == [QUERY]


def test_the_facets_of_results_count_a_pinned_image_search_did_not_rank(indexed_gallery, settings, monkeypatch):
    """The facets read with the results' visibility hold the ranked images only; a pinned image
    search did not rank is counted too (the facets then read every result's date and camera)."""
    settings.SEARCH_MAX_RESULTS = 5
    ranked = ranked_ids(by_text(QUERY))
    unranked = next(image.pk for image in indexed_gallery if image.pk not in ranked)
    Image.objects.filter(pk=unranked).update(camera_model="Pinned-1")
    pin(pinned=[unranked])
    results = search.search(search.text_query(QUERY), search.ResultOptions(facets=True))
    asked, columns_of = [], search.facets.columns_of
    monkeypatch.setattr(search.facets, "columns_of", lambda ids, **kwargs: asked.append(list(ids)) or columns_of(ids, **kwargs))
    spread = results.facets()
    assert len(results) == 6 and sum(spread.years.values()) == 6 and spread.cameras.get("Pinned-1") == 1
    assert asked == [[unranked]]  # the five the search ranked were read with it

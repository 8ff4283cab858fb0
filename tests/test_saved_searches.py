"""Saved searches: a member saves a query, an index run records the new images that match it,
/saved/ shows them as new once, and nobody else sees them; the API says the same. Real
tiny OpenCLIP model, real index and fresh segment, real database."""

import io
import re

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from gallery import search
from gallery.models import SavedSearch, SavedSearchMatch
from gallery.search.saved_searches import saved_search_query
from tests.conftest import as_upload
from tests.images import image_bytes
from tests.index_run import embed_and_match

pytestmark = pytest.mark.django_db
API = "/api/v1/saved-searches"


def api_as(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def other_member(db):
    return User.objects.create_user("other", password="other-password")


def scores_for(text, images):
    vector, _ = search.text_query(text).vector()
    return {image.pk: float(image.vector @ vector) for image in images}


def embed_new(upload, seeds):
    """Upload and embed; returns the rows with their vectors."""
    from gallery.models import Image

    pks = [upload(seed, title=f"New {seed}")[0].pk for seed in seeds]
    embed_and_match()
    return list(Image.objects.filter(pk__in=pks).order_by("pk"))


def new_cells(html):
    return set(map(int, re.findall(r'gallery-cell new-match" data-image="(\d+)"', html)))


def all_cells(html):
    return set(map(int, re.findall(r'data-image="(\d+)"', html)))


def test_a_saved_search_records_new_matches_and_the_page_shows_them_new_once(member_client, member, indexed_gallery, upload, settings):
    response = member_client.post("/saved/", {"q": "a red circle"})
    assert response.status_code == 302 and response["Location"] == "/saved/"
    saved = SavedSearch.objects.get()
    assert (saved.user, saved.text, saved.image_vector) == (member, "a red circle", None)

    settings.SEARCH_WEAK_SCORE = 1.01  # nothing can score that much: nothing is recorded
    embed_new(upload, [500])
    assert not SavedSearchMatch.objects.exists()

    new = embed_new(upload, [501, 502, 503])
    scores = scores_for("a red circle", new)
    threshold = sorted(scores.values())[1]  # the two best of three
    settings.SEARCH_WEAK_SCORE = threshold
    later = embed_new(upload, [504, 505, 506])
    later_scores = scores_for("a red circle", later)
    expected = {pk for pk, score in later_scores.items() if score >= threshold}
    recorded = {m.image_id: m.score for m in SavedSearchMatch.objects.filter(saved_search=saved)}
    assert set(recorded) == expected  # only images of the run after saving, above the threshold
    assert all(recorded[pk] == pytest.approx(later_scores[pk], abs=1e-5) for pk in expected)

    settings.SEARCH_WEAK_SCORE = -1.0  # every new image matches from now on
    fresh = embed_new(upload, [507])
    assert SavedSearchMatch.objects.filter(saved_search=saved, image=fresh[0]).exists()
    # The new vector is searchable at once (fresh segment): the saved query finds it too.
    assert fresh[0].pk in {hit.image.pk for hit in search.search(saved_search_query(saved))}

    first = member_client.get("/saved/").content.decode()
    assert new_cells(first) == expected | {fresh[0].pk} and "new</span>" in first
    second = member_client.get("/saved/").content.decode()
    assert new_cells(second) == set() and all_cells(second) == expected | {fresh[0].pk}
    assert "new</span>" not in second

    newest = embed_new(upload, [508])
    third = member_client.get("/saved/").content.decode()
    assert new_cells(third) == {newest[0].pk}


def test_another_member_cannot_see_or_delete_it(member_client, member, other_member, indexed_gallery, upload, settings):
    member_client.post("/saved/", {"q": "a photo", "name": "Mine"})
    saved = SavedSearch.objects.get()
    settings.SEARCH_WEAK_SCORE = -1.0
    embed_new(upload, [600])
    client = Client()  # not member_client's session
    client.force_login(other_member)
    page = client.get("/saved/").content.decode()
    assert "Mine" not in page and all_cells(page) == set() and "No saved searches" in page
    assert client.post(f"/saved/{saved.pk}/delete/").status_code == 404
    other = api_as(other_member)
    assert other.get(f"{API}/").json()["count"] == 0
    assert other.get(f"{API}/{saved.pk}/").status_code == 404
    assert other.get(f"{API}/{saved.pk}/matches/").status_code == 404
    assert other.delete(f"{API}/{saved.pk}/").status_code == 404
    assert SavedSearch.objects.filter(pk=saved.pk).exists()
    # Only the owner deletes it.
    assert member_client.post(f"/saved/{saved.pk}/delete/").status_code == 302
    assert not SavedSearch.objects.exists() and not SavedSearchMatch.objects.exists()


def test_visitors_are_sent_to_sign_in_and_the_button_shows_only_to_members(member_client, indexed_gallery):
    client = Client()
    response = client.get("/saved/")
    assert response.status_code == 302 and "login" in response["Location"]
    assert client.post("/saved/", {"q": "cats"}).status_code == 302 and not SavedSearch.objects.exists()
    assert APIClient().get(f"{API}/").status_code == 401
    assert 'id="save-search"' not in client.get("/search/?q=cats").content.decode()
    page = member_client.get("/search/?q=cats").content.decode()
    assert 'id="save-search"' in page and 'name="q" value="cats"' in page


def test_an_image_search_is_saved_with_its_vector(member_client, member, indexed_gallery):
    posted = member_client.post("/search/image/", {"file": as_upload(image_bytes(3)), "q": "at night", "balance": "70", "negative": "people"})
    token = re.search(r"query=([^&]+)$", posted["Location"]).group(1)
    from urllib.parse import unquote

    token = unquote(token)
    page = member_client.get(posted["Location"]).content.decode()
    assert 'id="save-search"' in page and f'name="query" value="{token}"' in page
    member_client.post("/saved/", {"query": token})
    saved = SavedSearch.objects.get()
    original = search.SearchQuery.from_token(token)
    assert (saved.text, saved.negative_text) == ("at night", "people")
    assert saved.image_weight == pytest.approx(original.image_weight) and saved.image_model == original.image_model
    kept = saved_search_query(saved)
    assert np.allclose(kept.vector()[0], original.vector()[0], atol=1e-6)


def test_api_parity(member, other_member, indexed_gallery, upload, settings):
    api = api_as(member)
    created = api.post(f"{API}/", {"text": "a blue square", "name": "Blue", "negative_text": "circles"}, format="multipart")
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["text"], body["negative_text"], body["has_image"], body["new_count"]) == ("Blue", "a blue square", "circles", False, 0)
    with_image = api.post(f"{API}/", {"file": io.BytesIO(image_bytes(4)), "text": ""}, format="multipart")
    assert with_image.status_code == 201 and with_image.json()["has_image"] is True
    assert api.post(f"{API}/", {"text": ""}, format="multipart").status_code == 400
    assert api.post(f"{API}/", {"text": "cats"}, format="json").status_code == 415  # one content type per operation
    assert SavedSearch.objects.filter(user=member).count() == 2

    settings.SEARCH_WEAK_SCORE = -1.0
    new = embed_new(upload, [700, 701])
    listed = {row["id"]: row for row in api.get(f"{API}/").json()["results"]}
    assert listed[body["id"]]["new_count"] == 2
    matches = api.get(f"{API}/{body['id']}/matches/?new=true").json()
    assert {m["image"]["id"] for m in matches["results"]} == {i.pk for i in new} and all(m["new"] for m in matches["results"])
    assert api.get(f"{API}/{body['id']}/matches/?new=true").json()["count"] == 0  # seen now
    everything = api.get(f"{API}/{body['id']}/matches/").json()
    assert everything["count"] == 2 and not any(m["new"] for m in everything["results"])
    assert {row["id"]: row["new_count"] for row in api.get(f"{API}/").json()["results"]}[body["id"]] == 0

    assert api.delete(f"{API}/{body['id']}/").status_code == 204
    assert not SavedSearch.objects.filter(pk=body["id"]).exists()


def test_a_member_keeps_at_most_the_cap_and_is_told_so(member_client, member, indexed_gallery, settings):
    from django.core.cache import cache

    cache.clear()
    settings.SAVED_SEARCHES_PER_USER = 2
    for text in ("cats", "dogs"):
        assert member_client.post("/saved/", {"q": text}).status_code == 302
    refused = member_client.post("/saved/", {"q": "birds"})
    assert refused.status_code == 400
    assert "You have 2 saved searches, the most one member can keep; delete one to save another." in refused.content.decode()
    api = api_as(member)
    answer = api.post(f"{API}/", {"text": "birds"}, format="multipart")
    assert answer.status_code == 400 and "You have 2 saved searches" in str(answer.json())
    assert sorted(SavedSearch.objects.filter(user=member).values_list("text", flat=True)) == ["cats", "dogs"]
    # Deleting one makes room again.
    member_client.post(f"/saved/{SavedSearch.objects.get(text='cats').pk}/delete/")
    assert api.post(f"{API}/", {"text": "birds"}, format="multipart").status_code == 201


def test_saving_searches_is_throttled_on_the_page_and_the_api_together(member_client, member, indexed_gallery, settings):
    from django.core.cache import cache

    cache.clear()
    settings.API_SAVED_SEARCH_RATE = "2/min"
    assert member_client.post("/saved/", {"q": "cats"}).status_code == 302
    assert api_as(member).post(f"{API}/", {"text": "dogs"}, format="multipart").status_code == 201
    assert member_client.post("/saved/", {"q": "birds"}).status_code == 429
    assert api_as(member).post(f"{API}/", {"text": "birds"}, format="multipart").status_code == 429
    assert sorted(SavedSearch.objects.values_list("text", flat=True)) == ["cats", "dogs"]
    # Reading is not throttled.
    assert member_client.get("/saved/").status_code == 200 and api_as(member).get(f"{API}/").status_code == 200
    cache.clear()


def test_counts_of_many_matches_stop_at_their_caps(member_client, member, indexed_gallery, monkeypatch):
    """A search that matched thousands of new images costs what one with a hundred costs: the
    badge says "100+", the API `new_count_more`, and the matches list counts its newest 1,000."""
    from gallery.api.pagination import CappedPaginator
    from gallery.search import saved_searches

    monkeypatch.setattr(saved_searches, "NEW_COUNT_MAX", 5)
    monkeypatch.setattr(CappedPaginator, "cap", 8)
    saved = SavedSearch.objects.create(user=member, text="a red square")
    quiet = SavedSearch.objects.create(user=member, text="a blue square")
    SavedSearchMatch.objects.bulk_create(SavedSearchMatch(saved_search=saved, image=image, score=0.3) for image in indexed_gallery[:12])
    SavedSearchMatch.objects.bulk_create(SavedSearchMatch(saved_search=quiet, image=image, score=0.3) for image in indexed_gallery[:3])
    listed = {row["id"]: row for row in api_as(member).get(f"{API}/").json()["results"]}
    assert (listed[saved.pk]["new_count"], listed[saved.pk]["new_count_more"]) == (5, True)
    assert (listed[quiet.pk]["new_count"], listed[quiet.pk]["new_count_more"]) == (3, False)
    badges = re.findall(r'data-saved-search="(\d+)".*?<span class="badge[^"]*new-count">([^<]+)</span>', member_client.get("/saved/").content.decode(), flags=re.S)
    assert dict(badges) == {str(saved.pk): "5+ new", str(quiet.pk): "3 new"}
    matches = api_as(member).get(f"{API}/{saved.pk}/matches/", {"page_size": 5}).json()
    assert matches["count"] == 8 and matches["count_more"] is True and len(matches["results"]) == 5
    assert api_as(member).get(f"{API}/{quiet.pk}/matches/").json()["count_more"] is False
    assert len(api_as(member).get(f"{API}/{saved.pk}/matches/", {"page_size": 5, "page": 2}).json()["results"]) == 3
    assert api_as(member).get(f"{API}/{saved.pk}/matches/", {"page_size": 5, "page": 3}).status_code == 404

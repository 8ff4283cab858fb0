"""Pages and API answer the same input the same way: one search path, one paging rule, one
error mapping. Each case drives both sides and compares statuses and results."""

import re

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from gallery import search
from gallery.errors import BadQuery
from tests.conftest import as_upload
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()


def page_titles(response):
    return re.findall(r'class="gallery-link" title="([^"]*)"', response.content.decode())


def api_titles(response):
    return [row["image"]["title"] for row in response.json()["results"]]


def both_text(client, params):
    return client.get("/search/", params), APIClient().get("/api/v1/search/", params)


TEXT_CASES = [
    ({"q": "a red square"}, 200),
    ({"q": "a red square", "page": "2"}, 200),
    ({"q": "a red square", "page": "3"}, 404),  # past the end
    ({"q": "a red square", "page": "zero"}, 404),
    ({"q": ""}, 400),
    ({"q": "x" * 301}, 400),
    ({"q": "a red square", "sort": "random"}, 400),
    ({"q": "a red square", "taken_after": "last year"}, 400),
]


@pytest.mark.parametrize("params, status", TEXT_CASES)
def test_text_search_same_status_and_results(client, indexed_gallery, params, status):
    page, api = both_text(client, params)
    assert (page.status_code, api.status_code) == (status, status)
    if status == 200:
        assert page_titles(page) == api_titles(api) and len(api_titles(api)) == (16 if params.get("page") != "2" else 4)


SORT_AND_FILTER_CASES = [  # (params, titles expected on the first page, from the 20 "Photo N")
    # Too few images to judge relevance: all kept; by date taken (their upload times), newest first.
    ({"q": "a red square", "sort": "newest"}, [f"Photo {n}" for n in range(19, 3, -1)]),
    ({"q": "a red square", "sort": "oldest", "orientation": "landscape"}, [f"Photo {n}" for n in range(16)]),
    ({"q": "a red square", "orientation": "portrait"}, []),  # every photo is 96x64
    ({"q": "a red square", "taken_after": "2001-01-01", "taken_before": "2001-12-31"}, []),
]


@pytest.mark.parametrize("params, expected", SORT_AND_FILTER_CASES)
def test_sort_and_filters_same_on_both(client, indexed_gallery, params, expected):
    page, api = both_text(client, params)
    assert (page.status_code, api.status_code) == (200, 200)
    assert page_titles(page) == api_titles(api) == expected


def test_curator_filters_same_on_both(client, indexed_gallery, django_user_model):
    """Hidden and failed images for a curator who asks: the same on the page and the API; a
    visitor's hidden=true keeps nothing on either."""
    from gallery.models import Image

    Image.objects.filter(title__in=["Photo 3", "Photo 7"]).update(hidden=True)
    curator = django_user_model.objects.create_superuser("curator", password="x")
    client.force_login(curator)
    api = APIClient()
    api.force_authenticate(curator)
    params = {"q": "a red square", "sort": "oldest", "hidden": "true"}
    page, answer = client.get("/search/", params), api.get("/api/v1/search/", params)
    assert page_titles(page) == api_titles(answer) == ["Photo 3", "Photo 7"]
    params = {"q": "a red square", "sort": "oldest", "status": "indexed", "hidden": "false"}
    page, answer = client.get("/search/", params), api.get("/api/v1/search/", params)
    assert page_titles(page) == api_titles(answer) == [f"Photo {n}" for n in range(20) if n not in (3, 7)][:16]
    client.logout()
    page, answer = both_text(client, {"q": "a red square", "hidden": "true"})
    assert page_titles(page) == api_titles(answer) == []


@pytest.mark.usefixtures("index_engine")
def test_before_any_index_both_say_409(client, upload):
    upload(1)
    page, api = both_text(client, {"q": "a cat"})
    assert (page.status_code, api.status_code) == (409, 409)
    assert "no index has been built" in page.content.decode() and "no index has been built" in api.json()["detail"]


def test_weak_matches_flagged_on_both(client, indexed_gallery, settings):
    settings.SEARCH_WEAK_SCORE = 2.0
    page, api = both_text(client, {"q": "anything"})
    assert "No good matches" in page.content.decode() and api.json()["weak_match"] is True
    settings.SEARCH_WEAK_SCORE = -2.0
    page, api = both_text(client, {"q": "anything"})
    assert "No good matches" not in page.content.decode() and api.json()["weak_match"] is False


@pytest.mark.usefixtures("index_engine")
def test_combined_search_same_ranking(client, indexed_gallery):
    """The page's slider at 80% is the API's weights 0.2 (text) and 0.8 (image)."""
    redirect = client.post("/search/image/", {"file": as_upload(image_bytes(7)), "q": "a green circle", "balance": 80, "negative": "blue"})
    page = client.get(redirect["Location"])
    api = APIClient().post(
        "/api/v1/search/combined/",
        {"file": as_upload(image_bytes(7)), "text": "a green circle", "text_weight": 0.2, "image_weight": 0.8, "negative_text": "blue"},
    )
    # The page's query travels as float16: the same photos, ranks may only swap on near-ties.
    assert page_titles(page)[:3] == api_titles(api)[:3] and set(page_titles(page)) == set(api_titles(api))


@pytest.mark.parametrize(
    "page_data, api_data",
    [
        ({"q": ""}, {"text": ""}),  # nothing to search
        ({"file": as_upload(b"not an image")}, {"file": as_upload(b"not an image")}),
        ({"file": as_upload(image_bytes(3)), "balance": 0}, {"file": as_upload(image_bytes(3)), "image_weight": 0, "text_weight": 1}),
    ],
)
def test_bad_combined_queries_are_400_on_both(client, indexed_gallery, page_data, api_data):
    page = client.post("/search/image/", page_data)
    api = APIClient().post("/api/v1/search/combined/", api_data)
    assert (page.status_code, api.status_code) == (400, 400)
    assert api.json()["detail"] in page.content.decode()


@pytest.mark.usefixtures("index_engine")
def test_similar_same_on_both(client, indexed_gallery):
    image = indexed_gallery[5]
    page = client.get(image.get_absolute_url())
    api = APIClient().get(f"/api/v1/images/{image.pk}/similar/")
    assert page_titles(page) == api_titles(api) and api_titles(api)[0] == "Photo 5"
    assert client.get(image.get_absolute_url(), {"page": 9}).status_code == 404
    assert APIClient().get(f"/api/v1/images/{image.pk}/similar/", {"page": 9}).status_code == 404


def test_combined_arithmetic():
    """normalise(tw * text + iw * image - nw * negative), in one place."""
    text, image, negative = np.eye(3, dtype=np.float32)
    combined = search.combine([(text, 0.2), (image, 0.8), (negative, -0.5)])
    expected = np.array([0.2, 0.8, -0.5]) / np.linalg.norm([0.2, 0.8, -0.5])
    assert np.allclose(combined, expected) and combined.dtype == np.float32
    with pytest.raises(BadQuery, match="cancel out"):
        search.combine([(text, 1.0), (text, -1.0)])


def test_a_query_survives_its_token_and_refuses_tampering(settings):
    vector = np.random.default_rng(0).normal(size=32).astype(np.float32)
    vector /= np.linalg.norm(vector)
    query = search.SearchQuery(text="at night", image_vector=vector, image_model="m", image_weight=0.7, text_weight=0.3)
    again = search.SearchQuery.from_token(query.to_token())
    assert (again.text, again.image_weight, again.text_weight, again.image_model) == ("at night", 0.7, 0.3, "m")
    assert float(np.dot(again.image_vector, vector)) > 0.999
    with pytest.raises(BadQuery, match="expired or is damaged"):
        search.SearchQuery.from_token(query.to_token()[:-3] + "abc")
    assert again.describe() == "your image (70%) + “at night”"

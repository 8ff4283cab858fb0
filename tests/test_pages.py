"""The server-rendered pages, through Django's test client."""

import re

import pytest
from django.urls import reverse

from gallery.models import Image
from tests.conftest import as_upload, stored_files
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


def titles(response):
    return re.findall(r'class="gallery-link" title="([^"]*)"', response.content.decode())


def test_gallery_pages_sixteen_newest_first(client, indexed_gallery):
    first = client.get("/")
    assert titles(first) == [f"Photo {n}" for n in range(19, 3, -1)]
    assert "Page 1 of 2" in first.content.decode()
    second = client.get("/?page=2")
    assert titles(second) == ["Photo 3", "Photo 2", "Photo 1", "Photo 0"]
    assert titles(client.get("/?page=abc")) == titles(first)  # a bad page number is not an error


def test_status_line_counts_searchable_and_waiting(client, indexed_gallery, upload):
    upload(77)
    text = client.get("/").content.decode()
    assert re.search(r"20 images searchable, index built at <time[^>]*>[^<]+</time>, 1 waiting", text)
    assert "random weights" in text  # the tiny test model has random weights


def test_empty_gallery_says_what_to_do(client):
    text = client.get("/").content.decode()
    assert "No photos yet" in text and "no index built yet" in text


def test_text_search_pages_results(client, indexed_gallery):
    response = client.get("/search/", {"q": "a red square"})
    assert response.status_code == 200 and len(titles(response)) == 16
    assert "#1 · " in response.content.decode()
    nxt = client.get("/search/", {"q": "a red square", "page": 2})
    assert len(titles(nxt)) == 4 and not set(titles(nxt)) & set(titles(response))
    assert 'href="?q=a+red+square&amp;page=2"' in response.content.decode()


def test_search_before_an_index_is_friendly(client, upload):
    upload(1)
    response = client.get("/search/", {"q": "cat"})
    assert response.status_code == 200
    assert "no index has been built" in response.content.decode()


@pytest.mark.parametrize("q, says", [("", "Type what"), ("y" * 400, "too long")])
def test_bad_text_queries_get_a_clear_400(client, indexed_gallery, q, says):
    response = client.get("/search/", {"q": q})
    assert response.status_code == 400 and says in response.content.decode()


def test_image_search_finds_the_twin_first_and_stores_nothing(client, indexed_gallery, media):
    files_before = stored_files(media)
    response = client.post("/search/image/", {"file": as_upload(image_bytes(7))})
    assert response.status_code == 302 and "?image=" in response["Location"]
    results = client.get(response["Location"])
    assert titles(results)[0] == "Photo 7"
    assert len(titles(client.get(response["Location"] + "&page=2"))) == 4
    assert stored_files(media) == files_before and Image.objects.count() == 20


def test_image_search_with_a_bad_file(client, indexed_gallery):
    response = client.post("/search/image/", {"file": as_upload(b"not an image")})
    assert response.status_code == 400 and "not an image" in response.content.decode()


def test_image_page_finds_itself_first(client, indexed_gallery):
    image = indexed_gallery[11]
    response = client.get(image.get_absolute_url())
    assert titles(response)[0] == "Photo 11"
    assert image.file.url in response.content.decode()  # download link


def test_hidden_image_page_is_not_found_for_visitors(client, admin_client, indexed_gallery):
    image = indexed_gallery[2]
    Image.objects.filter(pk=image.pk).update(hidden=True)
    assert client.get(image.get_absolute_url()).status_code == 404
    assert admin_client.get(image.get_absolute_url()).status_code == 200
    assert "Photo 2" not in titles(client.get("/?page=2"))


def test_upload_page_stores_the_photo(client, media):
    response = client.post(
        "/upload/", {"file": as_upload(image_bytes(3)), "title": "Salad", "description": "on a wooden table"}
    )
    image = Image.objects.get()
    assert response.status_code == 302 and response["Location"] == image.get_absolute_url()
    assert (image.title, image.description, image.status) == ("Salad", "on a wooden table", "pending")
    page = client.get(response["Location"]).content.decode()
    assert "becomes searchable after the next index run" in page


def test_upload_page_reports_a_duplicate(client):
    client.post("/upload/", {"file": as_upload(image_bytes(3)), "title": "first"})
    response = client.post("/upload/", {"file": as_upload(image_bytes(3)), "title": "again"}, follow=True)
    assert "already in the gallery" in response.content.decode() and Image.objects.count() == 1


def test_upload_page_rejects_a_broken_file_and_keeps_the_form(client, media):
    response = client.post("/upload/", {"file": as_upload(image_bytes(3)[:100]), "title": "Keep me"})
    text = response.content.decode()
    assert response.status_code == 400 and "damaged or truncated" in text and 'value="Keep me"' in text
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_bootstrap_is_served_by_the_app_itself(client):
    assert "/static/bootstrap/css/bootstrap.min.css" in client.get(reverse("gallery:gallery")).content.decode()
    css = b"".join(client.get("/static/bootstrap/css/bootstrap.min.css").streaming_content)
    assert b"Bootstrap" in css[:200]

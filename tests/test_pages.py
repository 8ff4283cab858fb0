"""The server-rendered pages, through Django's test client."""

import re
from urllib.parse import urlparse

import pytest
from django.urls import reverse
from django.utils import translation

from gallery.engine.backend import current_reader, index_backend
from gallery.models import Image
from tests.conftest import as_upload, stored_files
from tests.images import image_bytes
from tests.searching import by_text

pytestmark = pytest.mark.django_db


def titles(response):
    return re.findall(r'class="gallery-link" title="([^"]*)"', response.content.decode())


def link(response, rel: str) -> str | None:
    """The pager's "next" (older) or "prev" (newer) link, as a path with its query string."""
    found = re.search(rf'rel="{rel}" href="http://testserver([^"]+)"', response.content.decode())
    return found and found[1].replace("&amp;", "&")


def all_gallery_titles(client) -> list[str]:
    """Every title of the grid, following its "Older" links."""
    shown, response = [], client.get("/")
    while True:
        shown += titles(response)
        older = link(response, "next")
        if older is None:
            return shown
        response = client.get(older)


def test_gallery_pages_sixteen_newest_first(client, indexed_gallery):
    first = client.get("/")
    assert titles(first) == [f"Photo {n}" for n in range(19, 3, -1)]
    assert "Newer" not in first.content.decode()  # the newest page
    second = client.get(link(first, "next"))
    assert titles(second) == ["Photo 3", "Photo 2", "Photo 1", "Photo 0"]
    assert 'rel="next"' not in second.content.decode()  # the oldest page
    assert titles(client.get(link(second, "prev"))) == titles(first)
    # The API's paginator and its rule: a page that is not there is a 404.
    assert link(first, "next") == "/?" + urlparse(client.get("/api/v1/images/").json()["next"]).query
    for bad in ("abc", "0", "1-x", "9" * 30):
        assert client.get("/", {"cursor": bad}).status_code == 404


def test_status_line_counts_searchable_and_waiting(client, indexed_gallery, upload):
    upload(77)
    text = client.get("/").content.decode()
    assert re.search(r"20 images searchable, index built at <time[^>]*>[^<]+</time>, 1 waiting", text)
    assert "random weights" in text  # the tiny test model has random weights


def test_empty_gallery_says_what_to_do(client):
    text = client.get("/").content.decode()
    assert "No photos yet" in text and "no index built yet" in text


@pytest.mark.usefixtures("index_engine")
def test_text_search_pages_results(client, indexed_gallery):
    response = client.get("/search/", {"q": "a red square"})
    assert response.status_code == 200 and len(titles(response)) == 16
    assert "#1 · " in response.content.decode()
    nxt = client.get("/search/", {"q": "a red square", "page": 2})
    assert len(titles(nxt)) == 4 and not set(titles(nxt)) & set(titles(response))
    assert 'href="?q=a+red+square&amp;page=2"' in response.content.decode()


@pytest.mark.usefixtures("index_engine")
def test_the_grid_writes_its_numbers_unlocalized(client, indexed_gallery, settings):
    """The grid's numbers are written unlocalized (``{% localize off %}``, ``floatformat:"2u"``:
    localizing each was the grid's largest cost, docs/performance.md section 31), so a card's
    width and height, HTML attributes, and its score stay plain numbers in a locale that groups
    thousands and writes a decimal comma."""
    settings.USE_THOUSAND_SEPARATOR = True
    Image.objects.filter(pk=indexed_gallery[-1].pk).update(width=1024, height=2048)  # Photo 19, the newest
    with translation.override("de"):
        text = client.get("/").content.decode()
        results = client.get("/search/", {"q": "a red square"}).content.decode()
    assert 'width="1024" height="2048"' in text
    scores = re.findall(r'title="similarity to your query">#(\d+) · ([^<]*)</span>', results)
    assert [int(rank) for rank, _ in scores] == list(range(1, 17)) and all(re.fullmatch(r"-?\d\.\d\d", score) for _, score in scores), scores


@pytest.mark.usefixtures("index_engine")
def test_search_before_an_index_is_friendly(client, upload):
    upload(1)
    response = client.get("/search/", {"q": "cat"})
    assert response.status_code == 409  # as in the API
    assert "no index has been built" in response.content.decode()


@pytest.mark.parametrize("q, says", [("", "Type what"), ("y" * 400, "too long")])
def test_bad_text_queries_get_a_clear_400(client, indexed_gallery, q, says):
    response = client.get("/search/", {"q": q})
    assert response.status_code == 400 and says in response.content.decode()


def test_image_search_finds_the_twin_first_and_stores_nothing(client, indexed_gallery, media):
    files_before = stored_files(media)
    response = client.post("/search/image/", {"file": as_upload(image_bytes(7))})
    assert response.status_code == 302 and "?query=" in response["Location"]
    results = client.get(response["Location"])
    assert titles(results)[0] == "Photo 7"
    assert len(titles(client.get(response["Location"] + "&page=2"))) == 4
    assert stored_files(media) == files_before and Image.objects.count() == 20


def test_image_search_with_a_bad_file(client, indexed_gallery):
    response = client.post("/search/image/", {"file": as_upload(b"not an image")})
    assert response.status_code == 400 and "not an image" in response.content.decode()


@pytest.mark.usefixtures("index_engine")
def test_image_page_finds_itself_first(client, indexed_gallery):
    image = indexed_gallery[11]
    response = client.get(image.get_absolute_url())
    assert titles(response)[0] == "Photo 11"
    assert image.file.name in response.content.decode()  # download link


def test_hidden_image_page_is_not_found_for_visitors(client, admin_client, indexed_gallery):
    image = indexed_gallery[2]
    Image.objects.filter(pk=image.pk).update(hidden=True)
    assert client.get(image.get_absolute_url()).status_code == 404
    assert admin_client.get(image.get_absolute_url()).status_code == 200
    shown = all_gallery_titles(client)
    assert "Photo 2" not in shown and "Photo 1" in shown and len(shown) == 19


def test_upload_page_stores_the_photo(member_client, media):
    client = member_client
    response = client.post(
        "/upload/", {"files": as_upload(image_bytes(3)), "title": "Salad", "description": "on a wooden table"}
    )
    image = Image.objects.get()
    assert response.status_code == 302 and response["Location"] == image.get_absolute_url()
    assert (image.title, image.description, image.status) == ("Salad", "on a wooden table", "pending")
    page = client.get(response["Location"]).content.decode()
    assert "becomes searchable after the next index run" in page


def test_uploading_several_files_without_javascript_shows_a_summary(member_client, media):
    client = member_client
    client.post("/upload/", {"files": as_upload(image_bytes(1), name="first.jpg")})
    response = client.post(
        "/upload/",
        {"files": [as_upload(image_bytes(1), name="again.jpg"), as_upload(image_bytes(2), name="new.jpg"), as_upload(b"oops", name="bad.jpg")]},
    )
    text = response.content.decode()
    assert response.status_code == 200 and Image.objects.count() == 2
    assert "Added <a" in text and "Already in the gallery: <a" in text and "Rejected bad.jpg: The file is not an image" in text
    assert stored_files(media) == sorted(f for image in Image.objects.all() for f in (image.file.name, image.thumbnail.name))


def test_the_upload_page_script_uploads_through_the_api_with_the_session(member, media):
    """The one upload contract: the page's script posts each file to the REST API with the
    browser's session and CSRF token, exactly as this test does."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)
    page = browser.get("/upload/").content.decode()
    api = re.search(r'data-api="([^"]+)"', page).group(1)
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(api, {"file": as_upload(image_bytes(4), name="x.png")}).status_code == 403  # no token
    response = browser.post(api, {"file": as_upload(image_bytes(4), name="x.png")}, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201 and response.json()["page_url"].endswith(Image.objects.get().get_absolute_url())
    rejected = browser.post(api, {"file": as_upload(b"", name="empty.jpg")}, HTTP_X_CSRFTOKEN=csrf)
    assert rejected.status_code == 400 and "empty" in str(rejected.json()["file"])
    assert Image.objects.count() == 1


def test_upload_page_rejects_a_broken_file_and_keeps_the_form(member_client, media):
    client = member_client
    response = client.post("/upload/", {"files": as_upload(image_bytes(3)[:100]), "title": "Keep me"})
    text = response.content.decode()
    assert response.status_code == 400 and "damaged or truncated" in text and 'value="Keep me"' in text
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_upload_without_files_says_so(member_client):
    client = member_client
    response = client.post("/upload/", {"title": "nothing"})
    assert response.status_code == 400 and "Choose at least one photo" in response.content.decode()


def test_upload_page_tells_when_the_index_was_built(member_client, indexed_gallery):
    client = member_client
    assert "the last one built the index at" in client.get("/upload/").content.decode()


def test_combined_search_mixes_image_words_and_a_negative(client, indexed_gallery):
    response = client.post(
        "/search/image/", {"file": as_upload(image_bytes(7)), "q": "a green circle", "balance": 80, "negative": "blue"}
    )
    page = client.get(response["Location"]).content.decode()
    assert "Photos like your image (80%) + “a green circle”, but not “blue”" in page
    assert len(re.findall('class="gallery-link"', page)) == 16
    only_words = client.post("/search/image/", {"q": "a green circle", "balance": 0})
    assert client.get(only_words["Location"]).status_code == 200
    nothing = client.post("/search/image/", {"q": ""})
    assert nothing.status_code == 400 and "Give an example image, a text, or both" in nothing.content.decode()


def test_weak_matches_are_called_so(client, indexed_gallery, settings):
    settings.SEARCH_WEAK_SCORE = 2.0  # no cosine reaches it
    assert "No good matches" in client.get("/search/", {"q": "anything"}).content.decode()
    settings.SEARCH_WEAK_SCORE = -2.0
    assert "No good matches" not in client.get("/search/", {"q": "anything"}).content.decode()


@pytest.mark.usefixtures("index_engine")
def test_staff_hide_unhide_and_delete_from_the_image_page(client, admin_client, indexed_gallery, django_capture_on_commit_callbacks):
    image = indexed_gallery[1]
    url = f"/images/{image.pk}/curate/"
    engine = index_backend()
    vector = image.vector

    def found() -> set[int]:  # what search answers, and (Milvus) what the engine itself holds
        return {hit.image.pk for hit in by_text("anything")}

    def engine_holds() -> set[int]:
        return {pk for pk, _ in current_reader().query(vector, 50, only_visible=False)}

    assert "Hide</button>" not in client.get(image.get_absolute_url()).content.decode()
    assert "Hide</button>" in admin_client.get(image.get_absolute_url()).content.decode()
    assert client.post(url, {"action": "hide"}).status_code == 302 and not Image.objects.get(pk=image.pk).hidden  # to login
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "hide"})
    assert Image.objects.get(pk=image.pk).hidden
    assert image.pk not in found() and len(found()) == 19
    if engine.filters_visibility:  # Milvus hides it inside its own search too
        assert engine.hidden_ids() == {image.pk}
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "unhide"})
    assert not Image.objects.get(pk=image.pk).hidden and image.pk in found() and len(found()) == 20
    if engine.filters_visibility:
        assert engine.hidden_ids() == set()
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(url, {"action": "delete"})["Location"] == "/"
    assert not Image.objects.filter(pk=image.pk).exists()
    assert image.pk not in found() and len(found()) == 19
    # Milvus removed the row at once; Annoy keeps it until the next build (search drops it).
    assert (image.pk in engine_holds()) == (not engine.filters_visibility)


def test_unknown_pages_are_friendly(client):
    response = client.get("/images/999999/")
    assert response.status_code == 404 and "Back to the gallery" in response.content.decode()
    assert client.get("/api/v1/nothing-here/").json() == {"detail": "Not found."}


def test_bootstrap_is_served_by_the_app_itself(client):
    assert "/static/bootstrap/css/bootstrap.min.css" in client.get(reverse("gallery:gallery")).content.decode()
    css = b"".join(client.get("/static/bootstrap/css/bootstrap.min.css").streaming_content)
    assert b"Bootstrap" in css[:200]

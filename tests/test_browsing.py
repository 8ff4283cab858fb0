"""Browsing like a photo archive (issue 23): the timeline (newest taken first, under month
headings, in keyset pages) and the filters that the gallery page and the API's image list share
(date taken, camera, location, shape, tag): the same parameters give the same images on both."""

import io
import re

import pytest
from PIL import Image as PILImage
from rest_framework.test import APIClient

from gallery.catalogue.tags import tags_set
from gallery.catalogue.uploads import image_create
from tests.test_photo_facts import camera_exif

API = "/api/v1"

# title: (date taken or None, camera model or None, GPS, size)
PHOTOS = {
    "Beach": ("2024:07:14 10:00:00", "Pixel 7", True, (80, 48)),
    "Harbour": ("2024:07:02 18:30:00", "Pixel 7", False, (80, 48)),
    "Snow": ("2024:01:20 09:00:00", "Canon EOS 5D", True, (48, 80)),
    "Garden": ("2023:06:30 23:59:00", "Canon EOS 5D", False, (64, 64)),
    "Scan": (None, None, False, (80, 48)),  # no EXIF: sorted by its upload time (now, the newest)
}


def photo(title, colour) -> bytes:
    taken, model, gps, size = PHOTOS[title]
    out = io.BytesIO()
    image = PILImage.new("RGB", size, colour)
    if taken is None:
        image.save(out, "JPEG")
    else:
        exif = camera_exif(taken=taken, offset="", gps=gps)
        exif[0x0110] = model
        exif[0x0112] = 1
        image.save(out, "JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture
def archive(db, media):
    colours = ["red", "navy", "olive", "teal", "purple"]
    images = {}
    for title, colour in zip(PHOTOS, colours):
        images[title], created = image_create(file=io.BytesIO(photo(title, colour)), filename=f"{title}.jpg", title=title)
        assert created
    tags_set(image=images["Beach"], names=["summer"])
    tags_set(image=images["Harbour"], names=["summer"])
    return images


def page_titles(client, **params) -> list[str]:
    response = client.get("/", params)
    assert response.status_code == 200, response.content.decode()[-2000:]
    return re.findall(r'class="gallery-link" title="([^"]*)"', response.content.decode())


def api_titles(**params) -> list[str]:
    response = APIClient().get(f"{API}/images/", params)
    assert response.status_code == 200, response.content
    return [row["title"] for row in response.json()["results"]]


TIMELINE = ["Scan", "Beach", "Harbour", "Snow", "Garden"]


def test_the_timeline_shows_newest_taken_first_under_month_headings(client, archive):
    assert page_titles(client, order="taken") == api_titles(order="taken") == TIMELINE
    assert page_titles(client) == api_titles() == ["Scan", "Garden", "Snow", "Harbour", "Beach"]  # newest upload first
    text = client.get("/", {"order": "taken"}).content.decode()
    headings = re.findall(r'<h2 class="h6 mt-3 timeline-month" id="month-([0-9-]+)">([^<]+)</h2>', text)
    assert [label for _, label in headings][1:] == ["July 2024", "January 2024", "June 2023"]  # after this month's scan
    # Each month's photos sit under its heading.
    july = text.split('id="month-2024-07"')[1].split("<h2")[0]
    assert re.findall(r'title="([^"]*)"', july) == ["Beach", "Harbour"]


def test_timeline_pages_continue_in_date_taken_order(client, archive):
    first = APIClient().get(f"{API}/images/", {"order": "taken", "page_size": 2}).json()
    assert [row["title"] for row in first["results"]] == TIMELINE[:2] and "order=taken" in first["next"]
    second = APIClient().get(first["next"]).json()
    assert [row["title"] for row in second["results"]] == TIMELINE[2:4]
    # The page's "Older" link carries the order and a cursor, as the API's does.
    text = client.get("/", {"order": "taken", "page_size": 2}).content.decode()
    older = re.search(r'rel="next" href="([^"]+)"', text)[1].replace("&amp;", "&")
    assert "order=taken" in older and "cursor=" in older
    assert re.findall(r'class="gallery-link" title="([^"]*)"', client.get(older).content.decode()) == TIMELINE[2:4]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"taken_after": "2024-07-01", "taken_before": "2024-07-31"}, ["Beach", "Harbour"]),
        ({"taken_before": "2023-06-30"}, ["Garden"]),  # the last day is included, to 23:59
        ({"taken_after": "2024-01-20", "taken_before": "2024-01-20"}, ["Snow"]),
        ({"camera": "canon eos 5d"}, ["Snow", "Garden"]),
        ({"has_location": "true"}, ["Beach", "Snow"]),
        ({"has_location": "false"}, ["Scan", "Harbour", "Garden"]),
        ({"orientation": "portrait"}, ["Snow"]),
        ({"orientation": "square"}, ["Garden"]),
        ({"orientation": "landscape", "camera": "Pixel 7", "has_location": "false"}, ["Harbour"]),
        ({"tag": "summer", "has_location": "true"}, ["Beach"]),
        ({"camera": "Nikon"}, []),
    ],
)
def test_page_and_api_filter_alike_and_filters_combine(client, archive, params, expected):
    assert page_titles(client, order="taken", **params) == api_titles(order="taken", **params) == expected


def test_filters_keep_hidden_images_out_for_visitors(client, archive):
    from gallery.catalogue.curation import image_update

    image_update(image=archive["Beach"], hidden=True)
    assert page_titles(client, order="taken", camera="Pixel 7") == api_titles(order="taken", camera="Pixel 7") == ["Harbour"]


@pytest.mark.parametrize(
    "params, message",
    [({"order": "sideways"}, "Choose one of: uploaded, taken."), ({"taken_after": "last summer"}, "Enter a valid date.")],
)
def test_bad_filters_and_orders_are_a_clear_400_on_page_and_api(client, archive, params, message):
    reply = APIClient().get(f"{API}/images/", params)
    assert reply.status_code == 400 and message in str(reply.json())
    page = client.get("/", params)
    assert page.status_code == 400 and message in page.content.decode()
    assert 'class="gallery-link"' not in page.content.decode()


def test_no_match_says_so_and_offers_every_photo(client, archive):
    text = client.get("/", {"camera": "Nikon", "order": "taken"}).content.decode()
    assert "No photos match these filters." in text and 'href="/?order=taken">all photos</a>' in text
    assert 'value="Nikon"' in text  # the form keeps what was asked

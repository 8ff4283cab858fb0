"""The Server-Timing header (SERVER_TIMING=true): what a search's time went to, in milliseconds,
so a benchmark can subtract the text encoder from a search and people can see it in their
browser's developer tools."""

from __future__ import annotations

import re

import pytest

from gallery.engine import embedder

SERVER_TIMING = "gallery.http.server_timing.ServerTimingMiddleware"


def timings(response) -> dict[str, float]:
    header = response.headers.get("Server-Timing", "")
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([0-9.]+)", header)}


@pytest.fixture
def timed(settings):
    settings.MIDDLEWARE = [SERVER_TIMING, *settings.MIDDLEWARE]


def test_a_new_text_search_says_how_long_the_encoder_and_the_index_took(client, indexed_gallery, timed):
    embedder._text_vector.cache_clear()
    response = client.get("/api/v1/search/", {"q": "a photo never searched before"})
    assert response.status_code == 200 and len(response.json()["results"]) == 16
    spent = timings(response)
    assert set(spent) == {"encode", "index", "db", "app"}
    assert 0 < spent["encode"] < spent["app"] and 0 < spent["index"] < spent["app"] and 0 < spent["db"] < spent["app"]

    again = timings(client.get("/api/v1/search/", {"q": "a photo never searched before"}))
    # The vector and the ranking were kept (gallery.search.recent): neither the encoder nor the index this time.
    assert set(again) == {"db", "app"}


def test_pages_without_a_search_report_the_database_and_the_app(client, indexed_gallery, timed):
    assert set(timings(client.get("/"))) == {"db", "app"}


def test_off_unless_asked_for(client, indexed_gallery):
    response = client.get("/api/v1/search/", {"q": "a red bicycle"})
    assert response.status_code == 200 and "Server-Timing" not in response.headers

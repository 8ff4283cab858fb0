"""The "relevant only" cut (indexer/relevance.py): no similarity constant, so the same answer on
any score scale, and a planted group is kept while chance is not."""

import re

import numpy as np
import pytest

from indexer.relevance import _percentiles, relevant_count


def scene(rng, *, items=20_000, group=40, lift=6.0):
    """Background scores of a query over a collection, plus a planted group scoring ``lift``
    standard deviations higher: (candidate scores best first, sample of the collection, group size)."""
    scores = rng.normal(0.2, 0.03, size=items)
    scores[:group] = rng.normal(0.2 + lift * 0.03, 0.01, size=group)
    candidates = np.sort(scores)[::-1][:320]
    return candidates, scores[rng.choice(items, size=2000, replace=False)], group


def test_a_planted_group_is_kept_and_chance_is_not():
    candidates, background, group = scene(np.random.default_rng(0))
    kept = relevant_count(candidates, background, collection_size=20_000)
    # Every planted score is kept (they lead the candidates); of what is kept, the share of
    # chance stays near the rule's false-discovery rate (10%).
    assert kept >= group and (kept - group) / kept <= 0.12, kept


def test_a_query_that_matches_nothing_keeps_nothing():
    rng = np.random.default_rng(1)
    scores = rng.normal(0.2, 0.03, size=20_000)
    candidates = np.sort(scores)[::-1][:320]
    assert relevant_count(candidates, scores[:2000], collection_size=20_000) == 0


@pytest.mark.parametrize("scale, shift", [(0.3, 0.05), (4.0, -0.6), (1.0, 0.5)])
def test_another_model_s_score_scale_gives_the_same_cut(scale, shift):
    candidates, background, _ = scene(np.random.default_rng(2), lift=4.5)
    expected = relevant_count(candidates, background, collection_size=20_000)
    assert 0 < expected < 320
    assert relevant_count(candidates * scale + shift, background * scale + shift, collection_size=20_000) == expected


def test_a_larger_collection_asks_more_of_a_score():
    # The same scores stand out less among a million images than among ten thousand.
    candidates, background, _ = scene(np.random.default_rng(3), lift=4.5)
    assert relevant_count(candidates, background, collection_size=1_000_000) < relevant_count(
        candidates, background, collection_size=10_000)


def test_too_small_or_flat_a_background_cuts_nothing():
    assert relevant_count([0.9, 0.5], [0.1] * 10, collection_size=100) is None
    assert relevant_count([0.9, 0.5], [0.1] * 100, collection_size=100) is None


# --- in the gallery: "relevant only", sorted by date, and the weak-match message -------------


def _unit(rows):
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def planted(db, media):
    """1,012 embedded images of the test model, searchable through the fresh segment: 12 close
    to one another (the relevant group, 1.2% of the gallery, taken months apart), 1,000
    scattered at random."""
    import datetime as dt

    from benchmarks.fresh_segment import add_rows
    from gallery.engine import embedder
    from gallery.models import Image

    model, dim = embedder.embedder().model_id, embedder.embed_text("x").shape[0]
    rng = np.random.default_rng(5)
    centre = _unit(rng.normal(size=dim))
    group, noise = _unit(centre + 0.05 * rng.normal(size=(12, dim))), _unit(rng.normal(size=(1000, dim)))
    add_rows(np.vstack([group, noise]), model_id=model, status="pending", start=0)
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    for n, pk in enumerate(ids[:12]):  # taken in an order unrelated to their similarity
        Image.objects.filter(pk=pk).update(taken_at=dt.datetime(2024, 1 + (n * 5) % 12, 1, tzinfo=dt.timezone.utc))
    return ids[:12], model, dim


def _ids(reply):
    assert reply.status_code == 200, reply.content
    return [row["image"]["id"] for row in reply.json()["results"]]


def test_relevant_only_keeps_the_planted_group_on_api_and_page(client, planted):
    from rest_framework.test import APIClient

    from gallery.models import Image

    group, *_ = planted
    url = f"/api/v1/images/{group[0]}/similar/"
    api = APIClient()
    assert api.get(url, {"page_size": 100}).json()["count"] == 320  # SEARCH_MAX_RESULTS: nearly all chance
    kept = _ids(api.get(url, {"relevant": "true", "page_size": 100}))
    # The twelve planted, and none of the random ones (the best of which score 0.50-0.52 here,
    # z ~ 3 over the query's own background, against 0.91-1.0 for the group).
    assert sorted(kept) == sorted(group)
    # Sorted by date taken, over the kept ones only; the page shows the same order.
    taken = dict(Image.objects.filter(pk__in=kept).values_list("pk", "taken_at"))
    newest = _ids(api.get(url, {"sort": "newest", "page_size": 100}))
    assert sorted(newest) == sorted(kept) and [taken[pk] for pk in newest] == sorted(taken.values(), reverse=True)
    oldest = _ids(api.get(url, {"sort": "oldest", "page_size": 100}))
    assert [taken[pk] for pk in oldest] == sorted(taken.values())
    token_page = client.get("/search/", {"query": _similar_token(Image.objects.get(pk=group[0])), "sort": "newest"}).content.decode()
    assert [int(pk) for pk in re.findall(r'href="/images/(\d+)/" class="gallery-link"', token_page)] == newest[:16]
    assert '<strong class="mx-1" aria-current="true">relevant, newest taken first</strong>' in token_page


def _similar_token(image):
    from gallery import search

    return search.SearchQuery(image_vector=image.vector, image_model=image.embedding_model).to_token()


def test_a_query_near_nothing_is_a_weak_match_whatever_its_cosine(planted):
    from gallery import search

    _, model, dim = planted
    lost = _unit(np.random.default_rng(99).normal(size=dim))
    results = search.search(search.SearchQuery(image_vector=lost, image_model=model))
    # Its best cosine is well above SEARCH_WEAK_SCORE (0.2) on this 32-dimensional model, yet
    # nothing stands out from the query's own scores over the gallery.
    assert results.best_score > 0.2 and results.relevant == 0 and results.weak
    assert len(search.search(search.SearchQuery(image_vector=lost, image_model=model), search.ResultOptions(relevant=True))) == 0


@pytest.mark.parametrize("params, message", [({"sort": "random"}, "Unknown sort"), ({"relevant": "maybe"}, "relevant is true or false")])
def test_bad_result_options_are_a_400_on_api_and_page(client, planted, params, message):
    from rest_framework.test import APIClient

    group, *_ = planted
    reply = APIClient().get(f"/api/v1/images/{group[0]}/similar/", params)
    assert reply.status_code == 400 and message in reply.json()["detail"]
    page = client.get("/search/", {"q": "a cat", **params})
    assert page.status_code == 400 and message in page.content.decode()


def test_facets_is_true_or_false_on_the_api_and_the_page_always_shows_them(client, planted):
    from rest_framework.test import APIClient

    group, *_ = planted
    api = APIClient()
    reply = api.get(f"/api/v1/images/{group[0]}/similar/", {"facets": "maybe"})
    assert reply.status_code == 400 and "facets is true or false" in reply.json()["detail"]
    counted = api.get(f"/api/v1/images/{group[0]}/similar/", {"facets": "TRUE"}).json()
    assert counted["count"] >= 1 and sum(counted["facets"]["years"].values()) == counted["count"]
    assert "facets" not in api.get(f"/api/v1/images/{group[0]}/similar/", {"facets": "0"}).json()
    page = client.get("/search/", {"q": "a cat", "facets": "maybe"})  # the page's own choice: not a parameter of it
    assert page.status_code == 200
    (dates,) = [links for facet, links in page.context["refine"] if facet in ("Year", "Month")]
    assert sum(n for _, n, _ in dates) == page.context["page"].paginator.count >= 1


def test_the_rules_percentiles_are_numpys():
    """The relevance rule reads its background's 90th and 97.5th percentiles from one partial
    sort; they are numpy's (linear interpolation) to the last bit, for every length."""
    rng = np.random.default_rng(4)
    for n in (200, 201, 999, 1000, 1001):
        values = rng.normal(size=n)
        assert _percentiles(values, 90, 97.5) == np.percentile(values, [90, 97.5]).tolist(), n

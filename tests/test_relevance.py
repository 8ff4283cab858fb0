"""The "relevant only" cut (indexer/relevance.py): no similarity constant, so the same answer on
any score scale, and a planted group is kept while chance is not."""

import numpy as np
import pytest

from indexer.relevance import relevant_count


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

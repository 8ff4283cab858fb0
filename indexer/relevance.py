"""Which of a query's nearest images are relevant, with no similarity constant.

A fixed cosine threshold cannot work: every open_clip model has its own score scale (text-image
cosines of 0.2-0.35 for one, 0.05-0.15 for another), and so does every query. What is comparable
is how a result stands against the query's *own* scores over the whole collection. So the cut
compares each candidate with the query's background: its scores over a uniform sample of the
collection, whose upper tail is modelled by a normal curve through the sample's 90th and 97.5th
percentiles (relevant images, unless over 2.5% of the collection, do not move them). From that, the number of images of the collection expected to score at
least as high by chance is ``N * P(background >= s)``; a candidate at rank ``i`` whose expected
chance count is at most ``fdr * i`` is kept (Benjamini-Hochberg: among the kept, at most a
fraction ``fdr`` are expected to be chance). Everything is in units of the query's own spread, so
the rule gives the same answer when all scores are shifted or scaled (another model, another
query), which `tests/test_relevance.py` checks.

Framework-free: numpy only. ``gallery`` supplies the sample and the collection's size.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_FDR = 0.1  # a rate, not a score: at most ~10% of what is kept is expected to be chance
MIN_BACKGROUND = 200  # fewer sampled scores say too little about the 97.5th percentile
_Z90, _Z975 = 1.2815516, 1.9599640  # standard normal quantiles


def relevant_count(scores, background, *, collection_size: int, fdr: float = DEFAULT_FDR) -> int | None:
    """How many of ``scores`` (the candidates' similarities, best first) are relevant: they are
    kept as a prefix. ``background`` holds the same query's similarities to a uniform sample of
    the collection of ``collection_size`` images. None when the background is too small or flat
    to judge (then nothing should be cut)."""
    scores = np.asarray(scores, dtype=np.float64)
    background = np.asarray(background, dtype=np.float64)
    if len(background) < MIN_BACKGROUND or not len(scores):
        return None
    # The tail is what matters, and a query's scores over a collection are a mixture (one hump per
    # kind of photo): a normal curve matched to the sample's 90th and 97.5th percentiles describes
    # the upper tail far better than one matched to the bulk.
    q90, q975 = _percentiles(background, 90, 97.5)
    spread = (q975 - q90) / (_Z975 - _Z90)
    if not spread > 0:
        return None
    centre = q90 - _Z90 * spread
    # P(Z >= z) = erfc(z / sqrt 2) / 2, erfc mapped over plain floats: numpy has none, and a
    # loop over numpy's scalars cost twice as much (0.15 against 0.08 ms for 320; this, 0.02 ms;
    # 2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16).
    z = ((scores - centre) / (spread * math.sqrt(2))).tolist()
    chance = np.fromiter(map(math.erfc, z), dtype=np.float64, count=len(z)) * (0.5 * max(collection_size, 1))
    ranks = np.arange(1, len(scores) + 1)
    passing = np.flatnonzero(chance <= fdr * ranks)
    return int(passing[-1]) + 1 if len(passing) else 0


def _percentiles(values: np.ndarray, *percents: float) -> list[float]:
    """``np.percentile(values, percents)`` (linear interpolation), from one partial sort: the
    whole percentile machinery cost 37 us of a search for a 1,000-score background (2 AMD EPYC
    cores with avx2 avx512f avx512_vnni avx512_bf16)."""
    positions = [percent / 100 * (len(values) - 1) for percent in percents]
    below = sorted({math.floor(position) for position in positions} | {min(math.floor(position) + 1, len(values) - 1) for position in positions})
    ranked = np.partition(values, below)
    result = []
    for position in positions:
        low = math.floor(position)
        high = min(low + 1, len(values) - 1)
        fraction = position - low
        result.append(float(ranked[low]) + (float(ranked[high]) - float(ranked[low])) * fraction)
    return result

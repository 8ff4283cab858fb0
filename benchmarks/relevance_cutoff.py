"""The "relevant only" cut (indexer/relevance.py) on planted ground truth: precision and recall.

    .venv/bin/python -m benchmarks.relevance_cutoff [--items 100000] [--queries 20]

A CLIP-shaped collection (benchmarks/index.py: unit vectors around 200 centres, variance decaying
with the dimension) in which one group of known size is planted per query: images near the
query's concept. Queries are that concept seen from the other modality (text): the concept plus a
shared "modality gap" direction and noise, which puts text-image cosines far below image-image
ones, as in CLIP. Each setting varies the planted group's size, the gap (how low and how close
together all scores sit) and an affine change of every score (another model's scale). The 320
exact nearest candidates are cut by the rule; precision and recall are against the planted group.
A fixed cosine threshold, tuned for the first setting, is shown beside it.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.index import DIM, clip_like_vectors
from benchmarks.report import machine, table
from indexer.relevance import relevant_count

CANDIDATES = 320  # SEARCH_MAX_RESULTS
SAMPLE = 2000  # background scores per query (gallery.search.relevance samples as many)


def planted(items: int, group: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(collection, concept, ids of the planted group)."""
    spectrum = (1.0 / np.arange(1, DIM + 1)) ** 0.5
    collection = clip_like_vectors(items, seed=int(rng.integers(1 << 30)))
    concept = rng.normal(size=DIM) * spectrum
    concept /= np.linalg.norm(concept)
    ids = rng.choice(items, size=group, replace=False)
    members = concept + 0.45 * rng.normal(size=(group, DIM)) * spectrum  # the same subject, photographed variously
    collection[ids] = members / np.linalg.norm(members, axis=1, keepdims=True)
    return collection, concept, ids


def text_query(concept: np.ndarray, gap: float, rng) -> np.ndarray:
    direction = np.random.default_rng(777).normal(size=DIM)  # one modality gap for all texts
    direction /= np.linalg.norm(direction)
    query = concept + gap * direction + 0.3 * rng.normal(size=DIM) / np.sqrt(DIM)
    return (query / np.linalg.norm(query)).astype(np.float32)


def run(items: int, queries: int, settings: list[tuple[int, float, float, float]], seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    rows, fixed = [], None
    for group, gap, scale, shift in settings:
        cut_p, cut_r, fix_p, fix_r, kept = [], [], [], [], []
        for _ in range(queries):
            collection, concept, ids = planted(items, group, rng)
            query = text_query(concept, gap, rng)
            scores = collection @ query * scale + shift
            order = np.argsort(-scores)[:CANDIDATES]
            background = scores[rng.choice(items, size=SAMPLE, replace=False)]
            count = relevant_count(scores[order], background, collection_size=items)
            truth = set(ids.tolist())
            chosen = order[:count]
            if fixed is None:  # the best fixed threshold for the first setting, by F1
                fixed = _best_threshold(scores[order], [pk in truth for pk in order])
            by_threshold = order[scores[order] >= fixed]
            for picked, precision, recall in ((chosen, cut_p, cut_r), (by_threshold, fix_p, fix_r)):
                hits = len(truth.intersection(picked.tolist()))
                precision.append(hits / len(picked) if len(picked) else 1.0)
                recall.append(hits / len(truth))
            kept.append(count)
        rows.append([group, gap, f"{scale:g}x{shift:+g}", f"{np.mean(cut_p):.3f}", f"{np.mean(cut_r):.3f}",
                     f"{np.median(kept):.0f}", f"{np.mean(fix_p):.3f}", f"{np.mean(fix_r):.3f}"])
    return rows


def _best_threshold(scores: np.ndarray, relevant: list[bool]) -> float:
    best, best_f1 = float(scores[0]), -1.0
    total = sum(relevant)
    for i, score in enumerate(scores):
        hits = sum(relevant[: i + 1])
        f1 = 2 * hits / (i + 1 + total) if total else 0.0
        if f1 > best_f1:
            best, best_f1 = float(score), f1
    return best


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args(argv)
    settings = [  # group size, modality gap, score scale and shift
        (50, 1.0, 1, 0), (200, 1.0, 1, 0), (10, 1.0, 1, 0), (50, 2.0, 1, 0), (50, 0.5, 1, 0),
        (50, 1.0, 0.4, 0.1), (50, 1.0, 3, -0.5), (200, 2.0, 0.5, 0.2),
    ]
    rows = run(args.items, args.queries, settings)
    out = "\n".join([
        f"Relevance cut on planted ground truth: {args.items:,} CLIP-shaped vectors ({DIM}-d), {args.queries} queries "
        f"per setting, {CANDIDATES} candidates, background sample {SAMPLE}; CPU: {machine()}",
        "",
        table(["planted group", "gap", "scores", "cut precision", "cut recall", "kept (median)",
               "fixed-threshold precision", "fixed-threshold recall"], rows),
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()

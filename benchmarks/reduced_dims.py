"""Annoy over fewer dimensions, its candidates re-ranked exactly: recall@10 and query time
against Annoy over the whole vectors, on CLIP-shaped vectors (docs/performance.md, section 26).

    .venv/bin/python -m benchmarks.reduced_dims [--items 1000000] [--dims 512,256,128]
        [--nodes 5000,10000] [--queries 300] [--trees 50]

At a million images an Annoy query is memory-bound: each node it inspects is a 512-d vector read
from memory, not from the CPU's cache (0.28 us a node at 1M against 0.08 at 10k). This measures
the way out that section 26 proposed and ``indexer.index`` now builds (``INDEX_REDUCED_DIMS``,
section 27): an index over the first ``d`` principal components of the vectors (computed on a
sample of 50,000: ``indexer.index.principal_axes``), whose candidates for a search's 320 results
(SEARCH_MAX_RESULTS; 640 candidates, as ``indexer.index.rerank_candidates`` asks) are re-ranked
by their whole vectors; a ``d`` equal to ``--dim`` is Annoy over the whole vectors (angular, no
re-ranking). Figures in sections 26 and 27 before that rule re-ranked 320. Queries are
held-out vectors of the same distribution; the truth is an exact search. Each index is queried
once to page it in, then timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.index import DIM, clip_like_vectors, exact_top10
from benchmarks.report import machine, percentile_ms, table
from indexer.index import principal_axes, rerank_candidates

SEARCH_RESULTS = 320  # what a search asks the index for (SEARCH_MAX_RESULTS)
CANDIDATES = rerank_candidates(SEARCH_RESULTS)  # what the product re-ranks for them


def build(vectors: np.ndarray, projection: np.ndarray | None, *, trees: int, path: Path):
    """An Annoy forest over ``vectors`` (projected by ``projection``, dims x axes, when given:
    inner product, since a projection keeps the ranking by dot product, not the lengths)."""
    from annoy import AnnoyIndex

    reduced = vectors if projection is None else vectors @ projection
    forest = AnnoyIndex(reduced.shape[1], "angular" if projection is None else "dot")
    forest.on_disk_build(str(path))
    for item, vector in enumerate(reduced):
        forest.add_item(item, vector)
    forest.build(trees, n_jobs=-1)
    return forest


def query(forest, vectors: np.ndarray, projection: np.ndarray | None, vector: np.ndarray, nodes: int) -> list[int]:
    """The 10 best items: the forest's own order, or its candidates re-ranked by the whole vectors."""
    if projection is None:
        return forest.get_nns_by_vector(vector.tolist(), CANDIDATES, search_k=nodes)[:10]
    candidates = np.asarray(forest.get_nns_by_vector((vector @ projection).tolist(), CANDIDATES, search_k=nodes))
    return candidates[np.argsort(-(vectors[candidates] @ vector))[:10]].tolist()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dims", default="512,256,128", help="the index's dimensions; --dim itself: no projection")
    parser.add_argument("--nodes", default="5000,10000", help="search_k: nodes a query inspects")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--dim", type=int, default=DIM)
    args = parser.parse_args(argv)
    vectors = clip_like_vectors(args.items, dim=args.dim, seed=1)
    queries = clip_like_vectors(args.queries, dim=args.dim, seed=99)
    truth = [set(row) for row in exact_top10(vectors, queries).tolist()]
    axes = principal_axes(vectors)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dims in map(int, args.dims.split(",")):
            projection = None if dims >= args.dim else np.ascontiguousarray(axes[:dims].T, dtype=np.float32)
            path = Path(tmp) / f"{dims}.ann"
            started = time.perf_counter()
            forest = build(vectors, projection, trees=args.trees, path=path)
            built = time.perf_counter() - started
            for nodes in map(int, args.nodes.split(",")):
                for vector in queries:  # pages the forest in: the first pass pays the disk
                    query(forest, vectors, projection, vector, nodes)
                spent, found = [], 0
                for vector, expected in zip(queries, truth):
                    started = time.perf_counter()
                    best = query(forest, vectors, projection, vector, nodes)
                    spent.append(time.perf_counter() - started)
                    found += len(expected & set(best))
                label = f"{dims} (the whole vectors)" if projection is None else f"{dims} principal components, re-ranked"
                rows.append([label, nodes, found / (10 * len(queries)), percentile_ms(spent, 50), built, path.stat().st_size / 1e6])
            forest.unload()
            path.unlink()
    out = "\n".join([
        f"Annoy over fewer dimensions: {args.items:,} CLIP-shaped vectors of {args.dim} dimensions, {args.trees} trees, "
        f"{args.queries} held-out queries, {CANDIDATES} candidates re-ranked by the whole vectors",
        f"CPU: {machine()}",
        "",
        table(["index", "nodes", "recall@10", "p50 ms", "build s", "file MB"], rows),
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()

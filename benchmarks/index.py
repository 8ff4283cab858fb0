"""Annoy index: build time, file size, peak memory, query latency and recall@10 against exact
search, for several n_trees and search_k, on vectors shaped like CLIP embeddings.

    .venv/bin/python -m benchmarks.index [--sizes 10000,100000] [--trees 25,50,100]
        [--search-k 0,5000,20000,50000] [--queries 200] [--plot docs/recall-latency.svg]

Vectors are not uniform noise: they come from clusters in a space with a decaying spectrum, as
real embeddings do, and are L2-normalised. Each build runs in a child process so its peak
memory can be measured.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import percentile_ms, table
from indexer.index import SearchIndex, build_index

DIM = 512


def clip_like_vectors(n: int, *, dim: int = DIM, seed: int = 0, clusters: int = 200) -> np.ndarray:
    """Unit vectors around `clusters` fixed centres (the same for every seed) in a space whose
    variance decays with the dimension, as in CLIP embeddings; `seed` draws the points."""
    spectrum = (1.0 / np.arange(1, dim + 1)) ** 0.5
    centres = np.random.default_rng(12345).normal(size=(clusters, dim)) * spectrum
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # chunks keep the float64 temporaries small
        stop = min(n, start + 100_000)
        assign = rng.integers(0, clusters, size=stop - start)
        block = centres[assign] + 0.6 * rng.normal(size=(stop - start, dim)) * spectrum
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _build(vectors_path, folder, n_trees, result):
    vectors = np.load(vectors_path, mmap_mode="r")
    started = time.perf_counter()
    build_index(np.arange(len(vectors)), vectors, model="bench", out_dir=Path(folder), n_trees=n_trees, version="v")
    result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_in_child(vectors_path: Path, folder: Path, n_trees: int) -> dict:
    with multiprocessing.Manager() as manager:
        result = manager.dict()
        child = multiprocessing.get_context("fork").Process(target=_build, args=(vectors_path, folder, n_trees, result))
        child.start()
        child.join()
        return dict(result)


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    top = []
    for start in range(0, len(queries), 50):
        scores = queries[start : start + 50] @ vectors.T
        top.append(np.argpartition(-scores, 10, axis=1)[:, :10])
    return np.vstack(top)


def measure(index: SearchIndex, queries, truth, search_k: int) -> tuple[float, float, float]:
    latencies, recalls = [], []
    for query, expected in zip(queries, truth):
        started = time.perf_counter()
        found = index.query(query, 10, search_k=search_k) if search_k > 0 else _default_k(index, query)
        latencies.append(time.perf_counter() - started)
        recalls.append(len(set(expected) & {pk for pk, _ in found}) / 10)
    return percentile_ms(latencies, 50), percentile_ms(latencies, 99), float(np.mean(recalls))


def _default_k(index: SearchIndex, query):
    """Annoy's own default (search_k = k * n_trees), bypassing our floor."""
    items = index._forest.get_nns_by_vector(query, 10)
    return [(int(index.ids[i]), 0.0) for i in items]


def main(argv=None) -> tuple[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--trees", default="25,50,100")
    parser.add_argument("--search-k", default="0,5000,10000,20000,50000", help="0 = Annoy's default (k * n_trees)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--plot", default="", help="write a recall vs latency plot (SVG or PNG) here")
    args = parser.parse_args(argv)
    build_rows, query_rows, points = [], [], []
    for size in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            vectors = clip_like_vectors(size, dim=args.dim)
            np.save(tmp / "vectors.npy", vectors)
            # Held-out points of the same distribution: like a new photo, not a stored one.
            queries = clip_like_vectors(args.queries, dim=args.dim, seed=1)
            truth = exact_top10(vectors, queries)
            exact_ms = []
            for query in queries[:50]:
                started = time.perf_counter()
                np.argpartition(-(vectors @ query), 10)[:10]
                exact_ms.append(time.perf_counter() - started)
            for n_trees in map(int, args.trees.split(",")):
                folder = tmp / f"t{n_trees}"
                built = build_in_child(tmp / "vectors.npy", folder, n_trees)
                index = SearchIndex(folder / "v", verify=False)
                # The version's files: the forest, and over principal components the whole vectors too.
                size_mb = sum((folder / "v" / name).stat().st_size for name in index.manifest.files) / 1e6
                build_rows.append([size, n_trees, built["seconds"], size_mb, built["peak_mb"]])
                for search_k in map(int, args.search_k.split(",")):
                    p50, p99, recall = measure(index, queries, truth, search_k)
                    label = "default" if search_k <= 0 else search_k
                    query_rows.append([size, n_trees, label, p50, p99, recall])
                    points.append({"size": size, "trees": n_trees, "search_k": label, "p50": p50, "recall": recall})
                index.close()
                shutil.rmtree(folder)
            query_rows.append([size, "exact (numpy)", "-", percentile_ms(exact_ms, 50), percentile_ms(exact_ms, 99), 1.0])
    out = "\n".join(
        [
            f"Annoy at {args.dim} dimensions, angular metric, {args.queries} held-out queries from the same distribution",
            "",
            table(["items", "trees", "build s", "version MB", "peak RSS MB"], build_rows),
            "",
            table(["items", "trees", "search_k", "p50 ms", "p99 ms", "recall@10"], query_rows),
        ]
    )
    print(out)
    if args.plot:
        plot(points, args.plot)
    return out, points


def plot(points: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (size, trees) in sorted({(p["size"], p["trees"]) for p in points}):
        series = [p for p in points if p["size"] == size and p["trees"] == trees]
        ax.plot([p["p50"] for p in series], [p["recall"] for p in series], marker="o", label=f"{size:,} items, {trees} trees")
    ax.set_xscale("log")
    ax.set_xlabel("query latency p50 (ms, log scale)")
    ax.set_ylabel("recall@10")
    ax.axhline(0.98, color="grey", linestyle=":", linewidth=1)
    ax.set_title("Annoy: recall vs latency as search_k grows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


if __name__ == "__main__":
    main()

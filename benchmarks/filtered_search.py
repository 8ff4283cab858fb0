"""Filtered search (gallery.search.filtered_search): recall@16 against an exact filtered search, and
latency against the same search without a filter, at shares of 100%, 10%, 1% and 0.1%.

    .venv/bin/python -m benchmarks.filtered_search [--sizes 100000] [--queries 30]
        [--model ViT-B-32] [--cache-dir /tmp/scale-galleries] [--engine annoy|milvus]

``--engine milvus`` (with ``MILVUS_URI``: scripts/milvus-server) runs on a copy of the gallery
whose rows are published to Milvus first (every row, the fresh ones too: Milvus has no fresh
segment), so shares past EXACT_MAX take the engine's own filter (``id in [...]``).

The galleries are benchmarks/scale.py's (built there if missing, kept under ``--cache-dir``):
``size`` rows of CLIP-shaped unit vectors published as an Annoy index, 500 fresh ones beside
it, one row in 997 hidden. Filters with known shares go on top, independent of the vectors:
tags on every 10th, 100th and 1000th row, and ``orientation=landscape`` (every row) for 100%.
Each query is a stored vector moved a little (an image search: the model is not run), asked
through ``gallery.search.search`` in this process, on the same path pages and API take.
The exact answer is computed with numpy from every visible row's stored vector.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARES = {  # label -> (filter parameters, which rows pass: a function of the id)
    "100%": ({"orientation": "landscape"}, lambda pk: np.ones_like(pk, dtype=bool)),
    "10%": ({"tag": "every-10th"}, lambda pk: pk % 10 == 0),
    "1%": ({"tag": "every-100th"}, lambda pk: pk % 100 == 0),
    "0.1%": ({"tag": "every-1000th"}, lambda pk: pk % 1000 == 0),
}
K = 16


def tag_rows() -> None:
    """The tags that give the filters their shares (once per gallery)."""
    from gallery.models import Image, Tag

    through = Image.tags.through
    for every in (10, 100, 1000):
        tag, created = Tag.objects.get_or_create(name=f"every-{every}th", defaults={"slug": f"every-{every}th"})
        if created or not through.objects.filter(tag=tag).exists():
            high = Image.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            through.objects.bulk_create([through(image_id=pk, tag_id=tag.pk) for pk in range(every, high + 1, every)],
                                        batch_size=5000, ignore_conflicts=True)


def run(queries: int) -> dict:
    """In a gallery's process: every share, every query; returns the figures."""
    import django

    django.setup()
    from gallery import search
    from gallery.engine import embedder
    from gallery.models import Image
    from gallery.search import filtered_search

    tag_rows()
    if os.environ.get("INDEX_BACKEND") == "milvus":
        from gallery.indexing import index_publish

        index_publish(force=True)  # this copy's rows into Milvus
    model = embedder.embedder().model_id
    rows = list(Image.objects.filter(hidden=False, embedding_model=model).values_list("pk", "embedding"))
    ids = np.array([pk for pk, _ in rows])
    vectors = np.frombuffer(b"".join(bytes(blob) for _, blob in rows), dtype=np.float32).reshape(len(rows), -1)
    rng = np.random.default_rng(7)
    picks = rng.choice(len(rows), size=queries, replace=False)
    asked = vectors[picks] + 0.05 * rng.normal(size=(queries, vectors.shape[1])).astype(np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)

    # The ways each filtered search took, as gallery.search.filtered_search chose them: "exact" unless
    # it asked the engine among the ids ("engine") or for candidates ("index"; also after an
    # engine search that came back short). The last one answered.
    taken: list[list[str]] = []
    choose = filtered_search.nearest_within

    def recording(*args, nearest, nearest_among=None, **kwargs):
        steps = ["exact"]
        taken.append(steps)

        def among(ids, k):
            steps.append("engine")
            return nearest_among(ids, k)

        def index(k):
            steps.append("index")
            return nearest(k)

        return choose(*args, nearest=index, nearest_among=among if nearest_among else None, **kwargs)

    filtered_search.nearest_within = recording

    def ask(vector, params):
        query = search.SearchQuery(image_vector=vector, image_model=model)
        started = time.perf_counter()
        results = search.search(query, search.ResultOptions.from_params(params))
        top = [hit.image.pk for hit in results[:K]]
        return time.perf_counter() - started, top

    for vector in asked:  # warm-up: the index's pages these queries read, the fresh segment, the samples
        ask(vector, {})
    figures = {"size": len(rows), "shares": {}}
    unfiltered, plain_recalls = [], []
    for vector in asked:
        seconds, top = ask(vector, {})
        unfiltered.append(seconds)
        plain_recalls.append(len(set(ids[np.argsort(-(vectors @ vector))[:K]].tolist()) & set(top)) / K)
    figures["unfiltered_ms"] = statistics.median(unfiltered) * 1000
    figures["unfiltered_recall"] = [float(np.mean(plain_recalls)), float(np.min(plain_recalls))]
    for label, (params, passes) in SHARES.items():
        mask = passes(ids)
        ask(asked[0], params)  # warm-up of this filter's queries
        recalls, times = [], []
        taken.clear()
        for vector in asked:
            seconds, top = ask(vector, params)
            scores = vectors[mask] @ vector
            truth = set(ids[mask][np.argsort(-scores)[:K]].tolist())
            recalls.append(len(truth & set(top)) / max(1, min(K, len(truth))))
            times.append(seconds)
        share = filtered_search.estimated_share(search.ResultOptions.from_params(params).filtered_images())
        ways = Counter(steps[-1] for steps in taken)
        way = ", ".join(f"{name} {count}" if len(ways) > 1 else name for name, count in ways.most_common())
        figures["shares"][label] = {
            "passing": int(mask.sum()), "estimated_share": share, "way": way,
            "recall_mean": float(np.mean(recalls)), "recall_min": float(np.min(recalls)),
            "p50_ms": statistics.median(times) * 1000, "p90_ms": float(np.percentile(times, 90) * 1000),
        }
    return figures


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--cache-dir", default="/tmp/scale-galleries")
    parser.add_argument("--engine", choices=["annoy", "milvus"], default="annoy")
    parser.add_argument("--run-here", action="store_true", help=argparse.SUPPRESS)  # the gallery process's part
    args = parser.parse_args(argv)
    if args.run_here:
        print(json.dumps(run(args.queries)))
        return ""

    from benchmarks.report import machine, table
    from benchmarks.scale import gallery_env

    lines = []
    for size in [int(size) for size in args.sizes.split(",")]:
        folder = Path(args.cache_dir) / f"sqlite-{args.model}-{size}"
        common = ["--model", args.model, "--config-dir", args.config_dir, "--cache-dir", args.cache_dir]
        if not (folder / "info.json").exists():
            subprocess.run([sys.executable, "-m", "benchmarks.scale", "--prepare", "--sizes", str(size), *common],
                           cwd=ROOT, check=True)
        copy = None
        if args.engine == "milvus":  # a copy: publishing to Milvus makes it the copy's current version
            copy = Path(tempfile.mkdtemp(prefix="filtered-milvus-", dir=args.cache_dir))
            shutil.copy2(folder / "db.sqlite3", copy / "db.sqlite3")
            folder = copy
        env = gallery_env(folder, size=size, database="sqlite", pg_url="", model=args.model, config_dir=args.config_dir)
        if copy is not None:
            env |= {"INDEX_BACKEND": "milvus", "MILVUS_COLLECTION_PREFIX": f"bench_filtered_{size}"}
        try:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.filtered_search", "--run-here", "--queries", str(args.queries), *common],
                cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True, text=True,
            )
        finally:
            if copy is not None:
                from indexer.backends import get_backend

                backend = get_backend("milvus", uri=os.environ["MILVUS_URI"], prefix=env["MILVUS_COLLECTION_PREFIX"], timeout=30)
                backend.drop_all()  # the server keeps what the copy published
                backend.close()
                shutil.rmtree(copy)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        rows = [
            [label, f"{share['passing']:,}", f"{share['estimated_share']:.4f}", share["way"], share["recall_mean"],
             share["recall_min"], share["p50_ms"], share["p90_ms"], share["p50_ms"] / figures["unfiltered_ms"]]
            for label, share in figures["shares"].items()
        ]
        lines += [
            f"{args.engine}: {figures['size']:,} visible images (+ hidden); {args.queries} image queries; unfiltered: p50 {figures['unfiltered_ms']:.1f} ms, "
            f"recall@16 mean {figures['unfiltered_recall'][0]:.3f}, min {figures['unfiltered_recall'][1]:.3f} (the index's own)",
            table(["share", "images passing", "estimated share", "way", "recall@16 mean", "recall@16 min", "p50 ms", "p90 ms", "x unfiltered p50"], rows),
            "",
        ]
    out = "\n".join([*lines, f"CPU: {machine()}"])
    print(out)
    return out


if __name__ == "__main__":
    main()

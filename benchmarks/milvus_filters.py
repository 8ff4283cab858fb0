"""Which way should a filtered search take on a Milvus server? The same 320 nearest within a
filter asked three ways, on the same collection, the same queries, in one run:

- *attribute expression*: the filter as a field of the collection (``bucket < 10``), evaluated
  inside the HNSW search as a bitset;
- *id expression*: the ids that pass, from the database, as ``id in [...]``;
- *candidates*: the unfiltered search asked for ``320 / share x 3`` rows (at most 16,384) and
  the filter checked afterwards, as ``gallery.search.filtered_search`` does on Annoy.

    scripts/milvus-server start
    MILVUS_URI=http://127.0.0.1:19540 .venv/bin/python -m benchmarks.milvus_filters [--size 100000] [--queries 30]
    scripts/milvus-server stop

Recall@16 is against an exact search over the rows that pass (numpy). The vectors are
``benchmarks.index.clip_like_vectors``; ``bucket`` is ``id % 100``, so ``bucket < 10`` keeps 10%
and ``bucket == 0`` keeps 1% of the rows, spread evenly over the clusters.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

LIMIT = 320  # SEARCH_MAX_RESULTS: what the gallery asks for
K = 16
SHARES = {"10%": ("bucket < 10", lambda ids: ids % 100 < 10, 0.10), "1%": ("bucket == 0", lambda ids: ids % 100 == 0, 0.01)}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100000)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args(argv)

    from benchmarks.index import clip_like_vectors
    from benchmarks.report import machine, table
    from indexer.backends.milvus_backend import import_pymilvus

    pymilvus = import_pymilvus()
    client = pymilvus.MilvusClient(uri=os.environ["MILVUS_URI"])
    name = "bench_filters"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=512)
    schema.add_field("bucket", pymilvus.DataType.INT64)
    client.create_collection(name, schema=schema)
    vectors = clip_like_vectors(args.size, seed=1).astype(np.float32)
    ids = np.arange(1, args.size + 1)
    started = time.perf_counter()
    for start in range(0, args.size, 2000):
        client.insert(name, [{"id": int(i), "vector": v.tolist(), "bucket": int(i % 100)}
                             for i, v in zip(ids[start:start + 2000], vectors[start:start + 2000])])
    client.flush(name)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 100})
    client.create_index(name, index)
    client.load_collection(name)
    built = time.perf_counter() - started
    queries = clip_like_vectors(args.queries, seed=2).astype(np.float32)

    def search(vector, limit, expression="", ef=0):
        hits = client.search(name, data=[vector.tolist()], limit=limit, filter=expression, output_fields=["id"],
                             search_params={"params": {"ef": max(128, limit, ef)}}, consistency_level="Bounded")
        return [int(hit["id"]) for hit in hits[0]]

    for vector in queries[:5]:
        search(vector, LIMIT)  # warm-up
    rows = []
    for label, (expression, passes, share) in SHARES.items():
        mask = passes(ids)
        passing = ids[mask]
        candidates = min(16384, max(LIMIT, math.ceil(LIMIT / share * 3)))
        wide_ef = min(16384, math.ceil(LIMIT / share))  # as many as the unfiltered search would look at
        ways = {
            "attribute expression": lambda v: search(v, LIMIT, expression),
            f"attribute expression, ef {wide_ef:,}": lambda v: search(v, LIMIT, expression, ef=wide_ef),
            "id expression": lambda v: search(v, LIMIT, f"id in {passing.tolist()}"),
            f"candidates ({candidates:,})": lambda v: [pk for pk in search(v, candidates) if pk % 100 < share * 100][:LIMIT],
        }
        for way, ask in ways.items():
            times, recalls = [], []
            for vector in queries:
                truth = set(passing[np.argsort(-(vectors[mask] @ vector))[:K]].tolist())
                began = time.perf_counter()
                found = ask(vector)
                times.append((time.perf_counter() - began) * 1000)
                recalls.append(len(truth & set(found[:K])) / K)
            rows.append([label, f"{int(mask.sum()):,}", way, statistics.median(times), float(np.percentile(times, 90)),
                         float(np.mean(recalls)), float(np.min(recalls))])
    client.drop_collection(name)
    out = "\n".join([
        f"Milvus at {os.environ['MILVUS_URI']}: {args.size:,} vectors written, indexed (HNSW M 16, efConstruction 100, "
        f"COSINE) and loaded in {built:.0f} s; {args.queries} queries, limit {LIMIT}, ef max(128, limit)",
        table(["share", "rows passing", "way", "p50 ms", "p90 ms", "recall@16 mean", "recall@16 min"], rows),
        f"CPU: {machine()}",
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()

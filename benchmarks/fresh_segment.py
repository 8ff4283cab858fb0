"""Search latency with a fresh segment next to the built index.

    .venv/bin/python -m benchmarks.fresh_segment [--items 100000] [--fresh 0,1000,10000] [--queries 100]

Publishes an Annoy index of ``--items`` synthetic CLIP-shaped unit vectors (a temporary SQLite
database, as in benchmarks.http_search), then for each fresh-segment size adds that many rows
embedded since the build and times ``gallery.search.search`` in this process: the whole search
path (fingerprint query, Annoy, exact search over the fresh segment, merge, hidden/deleted
filter) for a query vector given directly, so without encoding. The first search after the
segment changed also reloads the segment from the database; that is reported apart. The
text-encoder floor is one text encoded by the model (random weights cost what real ones do).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

from benchmarks.scratch_gallery import scratch_settings


def add_rows(vectors, *, model_id: str, status: str, start: int) -> None:
    from django.utils import timezone

    from gallery.models import Image

    now = timezone.now()
    rows = [
        Image(
            file=f"originals/{start + n}.jpg", thumbnail=f"thumbnails/{start + n}.jpg",
            sha256=uuid.uuid4().hex + uuid.uuid4().hex, title=f"Photo {start + n}", width=640, height=480,
            size_bytes=1, status=status, embedding=vector.tobytes(), embedding_model=model_id, embedded_at=now,
        )
        for n, vector in enumerate(vectors)
    ]
    Image.objects.bulk_create(rows, batch_size=5000)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--fresh", default="0,1000,10000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(scratch_settings(tmp, model=args.model, config_dir=args.config_dir))
        return run(args)


def run(args) -> str:
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command

    from benchmarks.index import clip_like_vectors
    from benchmarks.report import machine, percentile_ms, table
    from gallery import search
    from gallery.engine import embedder, fresh_segment
    from gallery.indexing import index_publish
    from gallery.models import Image

    call_command("migrate", verbosity=0)
    model = embedder.embedder()
    model_id, dim = model.model_id, model.dim
    add_rows(clip_like_vectors(args.items, dim=dim, seed=1), model_id=model_id, status=Image.Status.PENDING, start=0)
    started = time.perf_counter()
    index_publish(force=True)
    print(f"index of {args.items:,} built and published in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    queries = clip_like_vectors(args.queries, dim=dim, seed=2)
    sizes = [int(size) for size in args.fresh.split(",")]
    pool = clip_like_vectors(max(sizes), dim=dim, seed=3)
    rows, have = [], 0
    for size in sizes:
        add_rows(pool[have:size], model_id=model_id, status=Image.Status.PENDING, start=args.items + have)
        have = size
        first = search.SearchQuery(image_vector=queries[0], image_model=model_id)
        reload_s = time.perf_counter()
        search.search(first)  # reloads the fresh segment once
        reload_s = time.perf_counter() - reload_s
        assert len(fresh_segment.current_segment(model_id)) == size
        latencies, fresh_hits = [], 0
        for vector in queries:
            query = search.SearchQuery(image_vector=vector, image_model=model_id)
            started = time.perf_counter()
            results = search.search(query)
            page = search.paginate(results, 1)
            latencies.append(time.perf_counter() - started)
            fresh_hits += sum(hit.image.pk > args.items for hit in page.object_list)
        segment = fresh_segment.current_segment(model_id)
        exact = []
        for vector in queries:
            started = time.perf_counter()
            segment.query(vector, 320)
            exact.append(time.perf_counter() - started)
        rows.append(
            [size, percentile_ms(latencies, 50), percentile_ms(latencies, 99), percentile_ms(exact, 50),
             reload_s * 1000, round(fresh_hits / len(queries), 2)]
        )
    texts = [f"a photo of a {word} number {n}" for n, word in enumerate(["cat", "dog", "car", "beach", "city"] * 4)]
    model.encode_texts(["warm up"])
    floor = []
    for text in texts:
        started = time.perf_counter()
        model.encode_texts([text])
        floor.append(time.perf_counter() - started)

    out = "\n".join(
        [
            f"Search with a fresh segment next to an Annoy index of {args.items:,} vectors ({dim}-d, "
            f"{settings_line()}), {args.queries} queries, in process, no encoding",
            f"CPU: {machine()}; numpy {np.__version__}",
            "",
            table(["fresh vectors", "search p50 ms", "search p99 ms", "exact fresh part p50 ms", "first search (reload) ms",
                   "fresh hits on page 1"], rows),
            "",
            f"Text-encoder floor ({args.model}, random weights, one text): p50 {percentile_ms(floor, 50):.1f} ms.",
        ]
    )
    print(out)
    return out


def settings_line() -> str:
    from django.conf import settings

    search_k = settings.INDEX_SEARCH_K or f"as measured at build (recall target {settings.INDEX_RECALL_TARGET})"
    return f"{settings.INDEX_TREES} trees, search_k {search_k}, {settings.SEARCH_MAX_RESULTS} results ranked"


if __name__ == "__main__":
    main()

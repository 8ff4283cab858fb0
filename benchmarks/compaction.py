"""Compaction: how long the hourly rebuild of the whole index takes, by size.

    .venv/bin/python -m benchmarks.compaction [--items 100000,1000000] [--fresh 1000]

For each size, in a process of its own (so one size's memory does not count for the next): a
temporary SQLite database holds ``--items`` indexed rows with synthetic CLIP-shaped vectors
(512-d for ViT-B-32), ``--fresh`` more are embedded since (the fresh segment), and the compaction runs as
the DAG's publish task runs it, through ``gallery.indexing``: read every vector and build the
Annoy index (``index_build``), then store it, pass the recall gate and make it current
(``index_activate``). Local file storage; with object storage the upload of the index files adds
their size over the network.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks.scratch_gallery import scratch_settings


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="100000,1000000")
    parser.add_argument("--fresh", type=int, default=1000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    args = parser.parse_args(argv)
    rows = []
    for items in (int(size) for size in args.items.split(",")):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            dim, row = pool.submit(measure, items, args.fresh, args.model, args.config_dir).result()
        rows.append(row)
    from benchmarks.report import machine, table

    out = "\n".join(
        [
            f"Compaction (the hourly rebuild) over indexed rows plus {args.fresh:,} fresh ones, {dim}-d, SQLite, local files",
            f"CPU: {machine()}",
            "",
            table(
                ["images", "read vectors + build s", "store + gate + make current s", "compaction s",
                 "index files MB", "peak RSS MB (model included)"],
                rows,
            ),
        ]
    )
    print(out)
    return out


def measure(items: int, fresh: int, model: str, config_dir: str) -> tuple[int, list]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(scratch_settings(tmp, model=model, config_dir=config_dir))
        import django

        django.setup()
        from django.core.management import call_command

        from benchmarks.fresh_segment import add_rows
        from benchmarks.index import clip_like_vectors
        from gallery.engine import embedder
        from gallery.indexing import EmbedReport, index_activate, index_build
        from gallery.models import Image

        call_command("migrate", verbosity=0)
        model = embedder.embedder()
        chunk = 100_000  # rows are generated and inserted a chunk at a time, as uploads would arrive
        for start in range(0, items, chunk):
            count = min(chunk, items - start)
            add_rows(clip_like_vectors(count, dim=model.dim, seed=start), model_id=model.model_id,
                     status=Image.Status.INDEXED, start=start)
        add_rows(clip_like_vectors(fresh, dim=model.dim, seed=items + 1), model_id=model.model_id,
                 status=Image.Status.PENDING, start=items)
        print(f"{items:,} + {fresh:,} rows inserted; compacting", file=sys.stderr)
        started = time.perf_counter()
        build = index_build(model.model_id)
        built = time.perf_counter()
        size_mb = sum(path.stat().st_size for path in build.folder.iterdir()) / 2**20
        version = index_activate(build, embed_report=EmbedReport())
        done = time.perf_counter()
        assert version is not None and version.item_count == items + fresh, version
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return model.dim, [items + fresh, built - started, done - built, done - started, size_mb, peak_mb]


if __name__ == "__main__":
    main()

"""Concurrent new text queries in one process: each on its own forward pass (today) against
sharing passes (indexer.embedding.batching), per runtime, at concurrency 1, 4 and 8.

    .venv/bin/python -m benchmarks.text_batching --export-dir DIR [--model ViT-B-32] [--queries 32] [--rounds 3]

DIR holds an export (``python -m benchmarks.runtimes --export-dir DIR`` makes one). Every query
is a new text (no cache); the cells are interleaved over rounds and the medians reported.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.report import table
from indexer.embedding import ModelSpec, get_embedder
from indexer.embedding.batching import TextBatcher
from indexer.runtime_choice import cpu_description, cpu_line

WORDS = ["red", "old", "tiny", "bright", "quiet", "wooden", "snowy", "golden", "broken", "shiny", "wet", "striped"]
THINGS = ["bicycle", "cat", "house", "boat", "tree", "car", "bridge", "dog", "lamp", "mountain", "bowl", "clock"]


def run_cell(encode, concurrency: int, texts: list[str]) -> tuple[list[float], float]:
    """Latencies of every query and the wall time, ``concurrency`` threads sharing ``texts``."""
    latencies, lock, items = [], threading.Lock(), iter(texts)

    def worker():
        while True:
            with lock:
                text = next(items, None)
            if text is None:
                return
            started = time.perf_counter()
            encode(text)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--runtimes", default="torch,onnx,onnx-int8")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--queries", type=int, default=32, help="per cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-ms", type=float, default=2.0, help="the batcher's bounded wait for company")
    args = parser.parse_args(argv)
    spec = ModelSpec(model=args.model, pretrained="random", config_dir=args.config_dir)
    levels = [int(c) for c in args.concurrency.split(",")]
    modes = {}
    for runtime in args.runtimes.split(","):
        embedder = get_embedder(spec.with_runtime(runtime), onnx_files=args.export_dir)
        embedder.encode_texts(["warm up", "warm up twice"])
        modes[(runtime, "one pass each")] = lambda text, e=embedder: e.encode_texts([text])[0]
        modes[(runtime, "shared passes")] = TextBatcher(embedder.encode_texts, wait_s=args.wait_ms / 1000).encode
    phrases = (f"a {w} {t} number {n}" for n, (w, t) in enumerate(itertools.cycle(itertools.product(WORDS, THINGS))))
    results = {(key, c): {"p50": [], "p99": [], "rps": []} for key in modes for c in levels}
    for _ in range(args.rounds):
        for key, encode in modes.items():
            for concurrency in levels:
                latencies, wall = run_cell(encode, concurrency, [next(phrases) for _ in range(args.queries)])
                cell = results[(key, concurrency)]
                cell["p50"].append(np.percentile(latencies, 50) * 1000)
                cell["p99"].append(np.percentile(latencies, 99) * 1000)
                cell["rps"].append(len(latencies) / wall)
    rows = []
    for (runtime, mode), encode in modes.items():
        for concurrency in levels:
            cell = results[((runtime, mode), concurrency)]
            rows.append([runtime, mode, concurrency, statistics.median(cell["rps"]), statistics.median(cell["p50"]), statistics.median(cell["p99"])])
    out = "\n".join([
        f"New text queries in one process, {args.model}: CPU {cpu_line(cpu_description())}",
        f"{args.queries} queries per cell, medians of {args.rounds} interleaved rounds; shared passes wait at most {args.wait_ms:g} ms for company",
        "",
        table(["runtime", "mode", "concurrency", "queries/s", "p50 ms", "p99 ms"], rows),
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()

"""What a new text search costs beyond its encoding, part by part, in process.

    .venv/bin/python -m benchmarks.search_cost [--sizes 10000,1000000] [--database sqlite|postgres]
        [--requests 300] [--cache-dir /tmp/scale-galleries] [--after-encoding] [--page]

On the galleries ``benchmarks.scale --prepare`` builds (the same ``--cache-dir``, model and
database), each size in a process of its own: ``--requests`` API text searches through Django's
test client, each with a text vector that is a new random unit vector, so that each is a new
text's search without the encoder (its 40-80 ms on 2 cores, and their noise, hide a change of
a millisecond in what follows it). The parts of a search are timed by wrapping the functions that
do them; the whole request's median comes first. The first tenth of the requests warm the caches
and are not counted. HTTP adds gunicorn and the socket (``benchmarks.scale``). ``--page`` asks
the search page (``/search/?q=``) instead, and times its own parts too: facets, refine links,
the status line, templates.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, "module:attribute"): what each part of a search is, in the order a search meets them.
PARTS = [
    ("the index's version and the fresh segment's fingerprint", "gallery.search:search_view"),
    ("the index query (Annoy)", "indexer.index:SearchIndex.query"),
    ("the fresh segment", "gallery.engine.fresh_segment:FreshSegment.query"),
    ("merging the two", "gallery.search:merge_ranked"),
    ("which results are relevant", "gallery.search.relevance:relevant_prefix"),
    ("the words' ranking", "gallery.catalogue.keywords:keyword_ranking"),
    ("fusion", "gallery.search.ranking:fuse"),
    ("visibility of the ranked ids", "gallery.search:visible_among"),
    ("pins", "gallery.search.pins:apply_pins"),
    ("search() in all", "gallery.search:search"),
    ("the page's rows", "gallery.search:SearchResults.__getitem__"),
    ("writing the page's 16 hits", "gallery.api.serializers:SearchHitSerializer.to_representation"),
    ("JSON", "rest_framework.renderers:JSONRenderer.render"),
]
# The search page's parts: search's own, then what the page adds to them.
PAGE_PARTS = [
    *PARTS[:-2],
    ("the facets", "gallery.search:SearchResults.facets"),
    ("the refine links", "gallery.web.views:_refine_links"),
    ("the status line", "gallery.web.context_processors:_index_status"),
    ("render() in all: context processors, templates", "gallery.web.views:render"),
    ("included templates (_filters, _refine, _grid, _pager)", "django.template.loader_tags:IncludeNode.render"),
]
WORDS = "red blue green small large old new wooden metal shiny running sitting cat dog car bicycle salad table shoe beach".split()


def measure(requests: int, *, after_encoding: bool = False, page: bool = False) -> dict[str, float]:
    """Medians in ms of this process's gallery (its settings in the environment)."""
    import random

    import django

    django.setup()
    import numpy as np
    from django.test import Client

    from gallery.engine import embedder
    from gallery.search import recent
    from indexer.embedding.factory import leave_the_cores_to_the_model

    leave_the_cores_to_the_model()  # as the WSGI entry point does
    spent: dict[str, list[float]] = {}
    parts = PAGE_PARTS if page else PARTS
    for _, spec in parts:
        _wrap(spec, spent)
    rng = np.random.default_rng(7)
    model = embedder.embedder()  # before the encoder is replaced below
    dim, encodings = model.dim, []

    def new_text_vector(model_id: str, text: str) -> np.ndarray:
        if after_encoding:  # the forward pass, its answer dropped
            started = time.perf_counter()
            model.encode_texts([text])
            encodings.append(time.perf_counter() - started)
        vector = rng.standard_normal(dim).astype(np.float32)
        return vector / np.linalg.norm(vector)

    embedder._text_vector = new_text_vector  # a new vector for every search: never one kept by recent
    recent.forget()
    words, client, whole = random.Random(1), Client(), []
    warm = max(1, requests // 10)
    for n in range(warm + requests):
        query = "+".join(words.choice(WORDS) for _ in range(3))
        started = time.perf_counter()
        response = client.get(f"/search/?q={query}" if page else f"/api/v1/search/?q={query}", HTTP_HOST="127.0.0.1")
        took = time.perf_counter() - started - (encodings.pop() if encodings else 0.0)
        if response.status_code != 200:
            raise SystemExit(f"search answered {response.status_code}: {response.content[:300]!r}")
        if n < warm:
            for times in spent.values():
                times.clear()
            continue
        whole.append(took)
    request = "the request beyond its encoding (Django's test client)" if after_encoding else "the request (Django's test client)"
    per_request = {request: statistics.median(whole) * 1000}
    hits = len(spent.get("gallery.api.serializers:SearchHitSerializer.to_representation", [])) / len(whole)
    for label, spec in parts:
        times = spent.get(spec, [])
        share = hits if spec.endswith("SearchHitSerializer.to_representation") else len(times) / len(whole)
        per_request[label] = statistics.median(times) * 1000 * share if times else 0.0
    return per_request


def _wrap(spec: str, spent: dict[str, list[float]]) -> None:
    module, attribute = spec.split(":")
    owner = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.setdefault(spec, []).append(time.perf_counter() - started)

    setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> str:
    from benchmarks.scale import gallery_env

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default="postgres://root@127.0.0.1:5432/gallery_scaleweb")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--cache-dir", default="/tmp/scale-galleries")
    parser.add_argument("--after-encoding", action="store_true", help="encode each text first, uncounted")
    parser.add_argument("--page", action="store_true", help="the search page instead of the API")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)  # the subprocess's part
    args = parser.parse_args(argv)
    if args.measure_only:
        print(json.dumps(measure(args.requests, after_encoding=args.after_encoding, page=args.page)))
        return ""

    from benchmarks.report import machine, table

    sizes = [int(size) for size in args.sizes.split(",")]
    results = {}
    for size in sizes:
        folder = Path(args.cache_dir) / f"{args.database}-{args.model}-{size}"
        if not (folder / "info.json").exists():
            raise SystemExit(f"no gallery in {folder}: build it with `python -m benchmarks.scale --prepare --sizes {size}` first")
        env = gallery_env(folder, size=size, database=args.database, pg_url=args.pg_url, model=args.model, config_dir=args.config_dir)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.search_cost", "--measure-only", "--requests", str(args.requests),
             *(["--after-encoding"] if args.after_encoding else []), *(["--page"] if args.page else [])],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True, text=True,
        )
        results[size] = json.loads(done.stdout.strip().splitlines()[-1])
    first = sizes[0]
    asked = "search page" if args.page else "API"
    headers = [f"part of a new text search ({asked})", *(f"{size:,} ms" for size in sizes), *(f"x {size:,}/{first:,}" for size in sizes[1:])]
    rows = [
        [label, *(results[size][label] for size in sizes), *(f"{results[size][label] / results[first][label]:.2f}" if results[first][label] else "-" for size in sizes[1:])]
        for label in results[first]
    ]
    out = "\n".join([
        f"A new text search beyond its encoding, in process: {args.database}, {args.model} (torch, random weights), medians of "
        f"{args.requests} {'requests of the search page' if args.page else 'API searches'}, each with a new random text vector "
        f"({'the encoder run on its text first, its time left out' if args.after_encoding else 'the encoder left out'}), one size at a time",
        f"CPU: {machine()}",
        "",
        table(headers, rows),
        "",
        "Each part's median per request, times how often a request calls it (the page's hits: 16 times one hit's). The parts "
        "overlap where one calls another (search() holds the ones above it, render() the status line and the templates), and "
        "the request holds Django's own work beside them.",
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()

"""Hybrid ranking: Recall@1 and @10 of keyword-only, CLIP-only and fused ranking, and their cost.

    .venv/bin/python -m benchmarks.hybrid [--generated 200] [--model ViT-B-32] [--database-url URL]

The labelled set: the sample photographs (gallery/catalogue/samples.py) with their titles and
descriptions, plus ``--generated`` pictures of coloured shapes (as tests/images.py makes them)
whose titles carry a product code and whose descriptions name a person. Each query has one
right image:

- "caption": the sample's natural-language query ("a photo of a cat"): a job for CLIP;
- "title": the sample's exact title ("Chelsea the cat");
- "code": a generated image's code ("SKU-10042"), which no picture can show;
- "name": the person a generated image's description names ("Maria Lindqvist").

Every image goes through the upload service, is embedded and published, then each query runs
through ``gallery.search.search`` once per ranking. Latency is per query in this process, the
text encoder's cache emptied before each one, so CLIP and hybrid pay for encoding. With random
weights (the default: no real weights can be downloaded here) CLIP ranks at chance, and the
CLIP column measures only that; the keyword and fused columns are what a deployment gets for
codes, titles and names. A temporary SQLite database unless ``--database-url`` names another
(an empty PostgreSQL database, for its full-text engine).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "grey", "pink"]
THINGS = ["chair", "table", "lamp", "vase", "mug", "sofa", "shelf", "rug", "clock", "mirror"]
FIRST = ["Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Olu", "Ingrid", "Ravi", "Chen", "Lucia", "Tomas", "Amara"]
LAST = ["Lindqvist", "Okafor", "Tanaka", "Silva", "Haddad", "Novak", "Berg", "Iyer", "Wang", "Rossi", "Kowalski", "Mensah"]


def generated_picture(seed: int) -> bytes:
    """A distinct picture per seed: a background with a few coloured shapes (tests/images.py)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    colour = lambda: tuple(rng.randrange(256) for _ in range(3))  # noqa: E731
    w, h = 256, 192
    image = Image.new("RGB", (w, h), colour())
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        box = [x0, y0, x0 + rng.randrange(w // 4, w // 2), y0 + rng.randrange(h // 4, h // 2)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour())
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def build(generated: int) -> list[tuple[str, str, int]]:
    """Upload the set; return the queries as (kind, text, right image id)."""
    from PIL import Image as PILImage

    from gallery.catalogue.samples import available_samples
    from gallery.catalogue.uploads import image_create

    queries = []
    for sample in available_samples():
        out = io.BytesIO()
        PILImage.open(sample.path).convert("RGB").save(out, format="JPEG", quality=90)
        image, _ = image_create(file=out, filename=sample.filename, title=sample.title, description=sample.description)
        queries += [("caption", sample.query, image.pk), ("title", sample.title, image.pk)]
    names = [f"{first} {last}" for last in LAST for first in FIRST]
    random.Random(7).shuffle(names)
    for n in range(generated):
        code = f"SKU-{10000 + n}"
        colour, thing = COLOURS[n % len(COLOURS)], THINGS[(n // len(COLOURS)) % len(THINGS)]
        name = names[n % len(names)]
        image, _ = image_create(
            file=io.BytesIO(generated_picture(n)),
            filename=f"{code}.jpg",
            title=f"{code} {colour} {thing}",
            description=f"A {colour} {thing}, photographed for {name}.",
            tags=[colour, thing],
        )
        queries.append(("code", code, image.pk))
        if n < len(names):
            queries.append(("name", name, image.pk))
    return queries


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=200)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--database-url", default="", help="an empty database to use instead of a temporary SQLite file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "webapp.settings",
                "GALLERY_VAR_DIR": tmp,
                "DATABASE_URL": args.database_url or f"sqlite:///{tmp}/db.sqlite3",
                "DJANGO_SECRET_KEY": "benchmark",
                "CLIP_MODEL": args.model,
                "CLIP_PRETRAINED": "random",
                "CLIP_MODEL_CONFIG_DIR": args.config_dir,
                "GALLERY_LOG_LEVEL": "WARNING",
                "AIRFLOW_API_URL": "",
            }
        )
        return run(args)


def run(args) -> str:
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from benchmarks.report import machine, percentile_ms, table
    from gallery import search
    from gallery.catalogue import keywords
    from gallery.engine import embedder
    from gallery.indexing import index_refresh
    from gallery.search.ranking import RANKINGS

    call_command("migrate", verbosity=0)
    queries = build(args.generated)
    started = time.perf_counter()
    assert index_refresh().published is not None
    print(f"{len(queries)} queries; embedded and published in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    embedder.embed_text("warm up")

    kinds = ["caption", "title", "code", "name"]
    ranks: dict[tuple[str, str], list[int]] = {}
    seconds: dict[str, list[float]] = {mode: [] for mode in RANKINGS}
    for kind, text, target in queries:
        for mode in RANKINGS:
            embedder._text_vector.cache_clear()  # every query pays for its encoding
            started = time.perf_counter()
            results = search.search(search.text_query(text, ranking_name=mode))
            ids = [pk for pk, *_ in results._ranked]
            seconds[mode].append(time.perf_counter() - started)
            rank = ids.index(target) + 1 if target in ids else 10**6
            ranks.setdefault((mode, kind), []).append(rank)
            ranks.setdefault((mode, "all"), []).append(rank)
    keyword_only = []
    for _, text, _ in queries:
        started = time.perf_counter()
        keywords.keyword_ranking(text, 320)
        keyword_only.append(time.perf_counter() - started)

    rows = []
    for mode in RANKINGS:
        row = [mode]
        for kind in [*kinds, "all"]:
            found = np.asarray(ranks[(mode, kind)])
            row += [f"{np.mean(found <= 1):.2f} / {np.mean(found <= 10):.2f}"]
        row += [percentile_ms(seconds[mode], 50), percentile_ms(seconds[mode], 95)]
        rows.append(row)
    counts = {kind: sum(1 for k, *_ in queries if k == kind) for kind in kinds}
    images = len({target for *_, target in queries})
    out = "\n".join(
        [
            f"Hybrid ranking on {images} images ({connection.vendor}), {len(queries)} queries "
            f"({', '.join(f'{counts[k]} {k}' for k in kinds)}), {embedder.embedder().model_id} (random weights: CLIP at chance)",
            f"CPU: {machine()}",
            "",
            table(
                ["ranking", *(f"{kind} R@1 / R@10" for kind in kinds), "all R@1 / R@10", "search p50 ms", "search p95 ms"],
                rows,
            ),
            "",
            f"Keyword ranking alone (the full-text query, no encoding): p50 {percentile_ms(keyword_only, 50):.2f} ms, "
            f"p95 {percentile_ms(keyword_only, 95):.2f} ms.",
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

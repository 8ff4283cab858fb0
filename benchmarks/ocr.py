"""OCR: how well each engine reads the words in photos, and how well search then finds them.

    .venv/bin/python -m benchmarks.ocr [--text 240] [--plain 60] [--engines rapidocr,tesseract]

Ground truth is generated: labels, tags and signs with known text (product codes like
"SKU-10473", short product names, sign words) in the DejaVu and Liberation fonts that ship with
Debian, in random sizes and colours, on a plate or straight on the picture, rotated up to 20
degrees, seen in perspective, blurred and saved at JPEG quality 35-95, pasted on real
photographs (scikit-image and scikit-learn samples). ``--plain`` photographs carry no text.

Every picture goes through the upload service; each engine then reads them all through
``gallery.indexing.ocr.images_read_text`` (the DAG task's path: decode bounds, shrinking, time limit),
and each code and name is searched through ``gallery.search`` with the keyword ranking (CLIP
plays no part in finding words). Reported per engine: character accuracy (1 - edit distance /
length of the true text, per picture, floored at 0), search R@1 and R@10 for codes as printed,
joined ("sku10473") and spaced ("SKU 10473"), and for names; false text on the text-free
photos; images/s; the reading process's peak memory.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FONT_DIR = Path("/usr/share/fonts/truetype")
FONT_FILES = [
    "dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf", "dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSansMono.ttf",
    "dejavu/DejaVuSansCondensed-Bold.ttf", "liberation/LiberationSans-Regular.ttf", "liberation/LiberationSans-Bold.ttf",
    "liberation/LiberationSerif-Regular.ttf", "liberation/LiberationSerif-Bold.ttf", "liberation/LiberationMono-Regular.ttf",
    "liberation/LiberationSansNarrow-Bold.ttf",
]
PREFIXES = ["SKU", "REF", "ART", "LOT", "PN", "ITEM", "MODEL", "NO"]
ADJECTIVES = [
    "Trail", "Harbor", "Velvet", "Cedar", "Copper", "Granite", "Meadow", "Summit", "Lunar", "Coastal", "Amber",
    "Willow", "Falcon", "Nordic", "Crimson", "Silver", "Maple", "Aurora", "Canyon", "Orchid",
]
NOUNS = [
    "Runner", "Lamp", "Kettle", "Backpack", "Blender", "Jacket", "Helmet", "Teapot", "Speaker", "Blanket", "Candle",
    "Bottle", "Wallet", "Compass", "Sandal", "Grinder", "Lantern", "Mixer", "Pillow", "Tripod",
]
SIGN_WORDS = ["Bakery", "Pharmacy", "Station", "Market", "Hotel", "Garage", "Library", "Museum", "Harbour", "Bistro", "Gallery", "Cinema"]
# Real photographs that ship inside packages, without text in them as far as anyone can see
# (the astronaut is left out: the patches on his suit carry names).
PHOTOS = ["chelsea", "coffee", "rocket", "camera", "coins", "clock", "brick", "grass", "gravel", "hubble_deep_field", "china", "flower"]


@dataclass
class Sample:
    kind: str  # "label" (code and name), "tag" (code only), "sign" (name only) or "plain" (no text)
    code: str  # as printed ("" when none)
    name: str  # as printed ("" when none)
    data: bytes  # the JPEG

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.code, self.name) if part)


def backgrounds() -> list:
    """The photographs, as RGB Pillow images."""
    import numpy as np
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = []
    for name in PHOTOS:
        if name in ("china", "flower"):
            continue
        array = np.asarray(getattr(data, name)())
        out.append(Image.fromarray(array).convert("RGB"))
    out += [Image.fromarray(array).convert("RGB") for array in load_sample_images().images]
    return out


def make_samples(count: int, plain: int, *, seed: int = 0) -> list[Sample]:
    """``count`` pictures with text and ``plain`` without, the same for the same seed."""
    from PIL import ImageFont

    rng = random.Random(seed)
    photos = backgrounds()
    fonts = [str(FONT_DIR / name) for name in FONT_FILES if (FONT_DIR / name).exists()]
    names = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
    rng.shuffle(names)
    signs = [f"{word} {number}" for word in SIGN_WORDS for number in range(1, 100)]
    rng.shuffle(signs)
    codes = rng.sample(range(1000, 99999), count)
    samples = []
    for n in range(count):
        kind = ("label", "tag", "sign")[n % 3]
        number = codes[n]
        code = f"{rng.choice(PREFIXES)}{rng.choice(['-', '-', '/', '.', ' '])}{number}" if kind != "sign" else ""
        if kind == "tag" and rng.random() < 0.5:
            code += f"-{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randrange(10)}"
        name = names[n % len(names)] if kind == "label" else signs[n % len(signs)] if kind == "sign" else ""
        lines = [line for line in (code, name) if line]
        font = ImageFont.truetype(rng.choice(fonts), rng.randrange(18, 64))
        samples.append(Sample(kind, code, name, _render(rng, rng.choice(photos), lines, font)))
    for n in range(plain):
        samples.append(Sample("plain", "", "", _render(rng, photos[n % len(photos)], [], None)))
    return samples


def _render(rng: random.Random, photo, lines: list[str], font) -> bytes:
    from PIL import Image, ImageDraw, ImageFilter

    width = rng.choice([640, 800, 1024])
    height = width * 3 // 4
    scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.4)
    background = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1))
    left, top = rng.randrange(background.width - width + 1), rng.randrange(background.height - height + 1)
    canvas = background.crop((left, top, left + width, top + height))
    if lines:
        ink = tuple(rng.randrange(0, 90) for _ in range(3))
        paper = tuple(rng.randrange(190, 256) for _ in range(3))
        if rng.random() < 0.3:
            ink, paper = paper, ink  # light on dark
        spacing = font.size // 3
        boxes = [font.getbbox(line) for line in lines]
        text_w = max(b[2] - b[0] for b in boxes)
        text_h = sum(b[3] - b[1] for b in boxes) + spacing * (len(lines) - 1)
        pad = font.size // 2
        patch = Image.new("RGBA", (text_w + 2 * pad, text_h + 2 * pad), (0, 0, 0, 0))
        draw = ImageDraw.Draw(patch)
        plate = rng.random() < 0.75  # a label or sign; otherwise letters straight on the photo
        if plate:
            draw.rounded_rectangle((0, 0, patch.width - 1, patch.height - 1), radius=pad // 2, fill=(*paper, 255))
        y = pad
        for line, box in zip(lines, boxes):
            draw.text((pad - box[0], y - box[1]), line, font=font, fill=(*ink, 255))
            y += box[3] - box[1] + spacing
        if rng.random() < 0.5:  # seen a little from the side
            patch = _perspective(rng, patch)
        patch = patch.rotate(rng.uniform(-20, 20), expand=True, resample=Image.Resampling.BICUBIC)
        if patch.width > width * 0.95 or patch.height > height * 0.95:
            ratio = min(width * 0.95 / patch.width, height * 0.95 / patch.height)
            patch = patch.resize((int(patch.width * ratio), int(patch.height * ratio)), Image.Resampling.LANCZOS)
        x, y = rng.randrange(width - patch.width + 1), rng.randrange(height - patch.height + 1)
        canvas.paste(patch, (x, y), patch)
    blur = rng.choice([0, 0, 0.6, 1.0, 1.4])
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=rng.randrange(35, 96))
    return out.getvalue()


def _perspective(rng: random.Random, patch):
    """The patch as if turned away by up to ~25 degrees: one side shorter than the other."""
    from PIL import Image

    w, h = patch.size
    shrink = rng.uniform(0.05, 0.2) * h
    if rng.random() < 0.5:  # right side farther
        quad = (0, 0, 0, h, w, h + shrink, w, -shrink)
    else:
        quad = (0, -shrink, 0, h + shrink, w, h, w, 0)
    return patch.transform((w, h), Image.Transform.QUAD, quad, resample=Image.Resampling.BICUBIC)


def character_accuracy(truth: str, read: str) -> float:
    """1 - Levenshtein distance / len(truth), on whitespace-collapsed text, floored at 0."""
    truth, read = " ".join(truth.split()), " ".join(read.split())
    if not truth:
        return 1.0 if not read else 0.0
    previous = list(range(len(read) + 1))
    for i, a in enumerate(truth, 1):
        current = [i]
        for j, b in enumerate(read, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return max(0.0, 1 - previous[-1] / len(truth))


def code_queries(code: str) -> dict[str, str]:
    """The code as printed, joined ("sku10473") and spaced ("SKU 10473")."""
    import re

    parts = re.findall(r"[^\W_]+", code)
    return {"printed": code, "joined": "".join(parts).lower(), "spaced": " ".join(parts)}


def rank_of(text: str, target: int) -> int:
    from gallery import search

    ids = [pk for pk, *_ in search.search(search.text_query(text, ranking_name="keywords"))._ranked]
    return ids.index(target) + 1 if target in ids else 10**6


def evaluate(engine: str, uploaded: list[tuple[Sample, int]]) -> dict:
    """Read every picture with ``engine`` (again), then score the reading and the search."""
    import numpy as np
    from django.conf import settings

    from gallery.indexing.ocr import images_read_text
    from gallery.models import Image, ImageText

    settings.OCR_ENGINE = engine
    report = images_read_text(again=True, progress=True)
    peak_mb = report.peak_mb  # of the reading process (indexer.ocr.TimedReader's child)
    texts = dict(Image.objects.values_list("pk", "ocr_text"))
    seconds = dict(ImageText.objects.values_list("image_id", "seconds"))
    accuracy = [character_accuracy(sample.text, texts[pk]) for sample, pk in uploaded if sample.kind != "plain"]
    plain = [texts[pk] for sample, pk in uploaded if sample.kind == "plain"]
    ranks: dict[str, list[int]] = {}
    for sample, pk in uploaded:
        if sample.code:
            for variant, query in code_queries(sample.code).items():
                ranks.setdefault(f"code {variant}", []).append(rank_of(query, pk))
        if sample.name:
            ranks.setdefault("name", []).append(rank_of(sample.name, pk))
    recall = {kind: (float(np.mean(np.asarray(r) <= 1)), float(np.mean(np.asarray(r) <= 10))) for kind, r in ranks.items()}
    return {
        "engine": engine,
        "accuracy": float(np.mean(accuracy)),
        "exact": float(np.mean([a == 1.0 for a in accuracy])),
        "recall": recall,
        "false_text": sum(1 for text in plain if text.strip()) / max(1, len(plain)),
        "false_examples": [text for text in plain if text.strip()][:5],
        # Median seconds a picture took in the engine: with text, and without (what the
        # detector's "no text here" costs). Failed pictures are left out.
        "median_text_s": float(np.median([seconds[pk] for sample, pk in uploaded if sample.kind != "plain" and seconds[pk]] or [0])),
        "median_plain_s": float(np.median([seconds[pk] for sample, pk in uploaded if sample.kind == "plain" and seconds[pk]] or [0])),
        "images_per_s": report.read / report.seconds if report.seconds else 0.0,
        "seconds": report.seconds,
        "failed": report.failed,
        "peak_mb": peak_mb,
        "counts": {kind: len(r) for kind, r in ranks.items()},
    }


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=int, default=240, help="pictures with text")
    parser.add_argument("--plain", type=int, default=60, help="photographs without text")
    parser.add_argument("--engines", default="rapidocr,tesseract")
    parser.add_argument("--threads", type=int, default=2, help="threads each engine may use")
    parser.add_argument("--time-limit", type=float, default=30.0, help="OCR_TIME_LIMIT: seconds per picture")
    parser.add_argument("--database-url", default="", help="an empty database to use instead of a temporary SQLite file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        from benchmarks.scratch_gallery import scratch_settings

        os.environ.update(scratch_settings(tmp, model="ViT-B-32"))
        os.environ.update({"OCR_THREADS": str(args.threads), "OCR_TIME_LIMIT": str(args.time_limit), "AIRFLOW_API_URL": ""})
        if args.database_url:
            os.environ["DATABASE_URL"] = args.database_url
        return run(args)


def run(args) -> str:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from benchmarks.report import machine, table
    from gallery.catalogue.uploads import image_create

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    samples = make_samples(args.text, args.plain)
    uploaded = []
    for n, sample in enumerate(samples):
        image, _ = image_create(file=io.BytesIO(sample.data), filename=f"photo-{n}.jpg", title=f"Photo {n}")
        uploaded.append((sample, image.pk))
    print(f"{len(samples)} pictures made and uploaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    results = []
    for engine in args.engines.split(","):
        results.append(evaluate(engine, uploaded))
        print(results[-1], file=sys.stderr, flush=True)  # each engine's figures as soon as they are in
    kinds = ["code printed", "code joined", "code spaced", "name"]
    rows = []
    for r in results:
        rows.append(
            [r["engine"], f"{r['accuracy']:.3f}", f"{r['exact']:.2f}"]
            + [f"{r['recall'][k][0]:.2f} / {r['recall'][k][1]:.2f}" for k in kinds]
            + [f"{r['false_text']:.2f}", f"{r['images_per_s']:.2f}", f"{r['median_text_s']:.2f} / {r['median_plain_s']:.2f}",
               f"{r['peak_mb']:.0f}", r["failed"]]
        )
    counts = results[0]["counts"]
    out = "\n".join(
        [
            f"OCR on {args.text} generated pictures with text ({counts.get('code printed', 0)} codes, "
            f"{counts.get('name', 0)} names or signs) and {args.plain} photographs without ({connection.vendor}; "
            f"{args.threads} threads per engine; pictures shrunk to at most {os.environ.get('OCR_MAX_SIDE', '1600')} px; "
            f"{args.time_limit:g} s per picture at most)",
            f"CPU: {machine()}",
            "",
            table(
                ["engine", "char accuracy", "read exactly", *(f"{k} R@1 / R@10" for k in kinds),
                 "false text (share of plain photos)", "images/s", "median s text / plain", "peak MB", "failed"],
                rows,
            ),
            "",
            *(f"False text from {r['engine']}: {r['false_examples']}" for r in results),
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

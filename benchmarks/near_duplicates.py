"""Precision and recall of near-duplicate detection (gallery/indexing/duplicates.py) on a generated set.

    .venv/bin/python -m benchmarks.near_duplicates [--seed N] [--faces 100] [--first-face 0]
        [--sweep] [--config-dir DIR]

Each sample photo (gallery/catalogue/samples.py) comes with five copies. Without ``--seed``, the issue's
fixed copies: resized to half, re-compressed as a JPEG at quality 35, cropped by 5% a side,
colour-shifted (saturation +15%, brightness +6%, a small per-channel offset), and resized to
60% plus re-compressed. With ``--seed N``, copies of the same five kinds whose parameters are
drawn at random around those (``random_variants``): a fresh set per seed, so thresholds can be
chosen on one seed and reported on another. Distinct photos are the originals themselves, five
more scikit-image photos and, as hard negatives, faces from scikit-image's LFW subset (small,
similar-looking portraits; ``--first-face`` and ``--faces`` pick which, so the faces used to
choose thresholds can be kept out of the report). Every file goes through the upload's decode
and perceptual hashes and the embedding pipeline's decode and model. A pair counts as found
when the two images end up in one group (union-find over matched pairs, as the service groups
them), so precision and recall are over pairs.

Six rules are reported: the 64-bit pHash alone (distance <= DUPLICATE_MAX_PHASH_DISTANCE),
the crop-tolerant 256-bit hashes alone (<= DUPLICATE_MAX_PHASH256_DISTANCE), CLIP alone
(cosine >= DUPLICATE_COSINE_ALONE, the rule for rows without a hash), the service's rule
before the 256-bit hashes existed (cosine >= 0.85 and 64-bit distance <= 12, its defaults
then), the rule for older rows that have only the 64-bit hash (cosine >= DUPLICATE_MIN_COSINE
and the 64-bit distance) and the service's rule (the same cosine and the 256-bit distance). ``--sweep`` adds precision and recall of the
256-bit hashes alone at each distance, and of the service's rule at each least cosine: the
figures the thresholds are chosen from. The model is
CLIP_MODEL / CLIP_PRETRAINED from the environment (random ViT-B-32 weights when unset).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.report import machine, table, timed


def _setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark")
    import django

    django.setup()


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _colour_shift(image: Image.Image) -> Image.Image:
    shifted = ImageEnhance.Brightness(ImageEnhance.Color(image).enhance(1.15)).enhance(1.06)
    offset = np.asarray(shifted, dtype=np.int16) + np.array([6, -4, 5], dtype=np.int16)
    return Image.fromarray(np.clip(offset, 0, 255).astype(np.uint8))


def variants(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    return {
        "resized": _jpeg(image.resize((max(w // 2, 16), max(h // 2, 16)), Image.Resampling.LANCZOS)),
        "recompressed": _jpeg(image, quality=35),
        "cropped": _jpeg(image.crop((w // 20, h // 20, w - w // 20, h - h // 20))),
        "colour": _jpeg(_colour_shift(image)),
        "resized+recompressed": _jpeg(image.resize((max(w * 3 // 5, 16), max(h * 3 // 5, 16))), quality=50),
    }


def random_variants(image: Image.Image, rng: np.random.Generator) -> dict[str, bytes]:
    """The five kinds of copy with parameters drawn around the issue's: half to 3/4 size;
    quality 25-50; 3-7% off each side, each side its own (so not always centred); saturation
    x0.85-1.2, brightness x0.92-1.08 and an offset of up to 8 levels a channel; 50-80% size at
    quality 35-65."""
    w, h = image.size
    scale, small = rng.uniform(0.35, 0.75), rng.uniform(0.5, 0.8)
    left, top, right, bottom = (rng.uniform(0.03, 0.07) for _ in range(4))
    shifted = ImageEnhance.Color(image).enhance(rng.uniform(0.85, 1.2))
    shifted = ImageEnhance.Brightness(shifted).enhance(rng.uniform(0.92, 1.08))
    offset = np.asarray(shifted, dtype=np.int16) + rng.integers(-8, 9, size=3).astype(np.int16)
    size = lambda f: (max(round(w * f), 16), max(round(h * f), 16))
    return {
        "resized": _jpeg(image.resize(size(scale), Image.Resampling.LANCZOS)),
        "recompressed": _jpeg(image, quality=int(rng.integers(25, 51))),
        "cropped": _jpeg(image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))),
        "colour": _jpeg(Image.fromarray(np.clip(offset, 0, 255).astype(np.uint8))),
        "resized+recompressed": _jpeg(image.resize(size(small)), quality=int(rng.integers(35, 66))),
    }


def generated_set(faces: int, *, seed: int | None = None, first_face: int = 0) -> list[tuple[str, str, bytes]]:
    """``(label, name, file bytes)``: images with one label are copies of one photo. ``seed``
    None gives the issue's fixed copies; a number, copies drawn at random with that seed."""
    from gallery.catalogue.samples import available_samples

    rng = np.random.default_rng(seed)
    rows = []
    for sample in available_samples():
        original = Image.open(sample.path).convert("RGB")
        label = Path(sample.filename).stem
        rows.append((label, f"{label}:original", sample.path.read_bytes()))
        copies = variants(original) if seed is None else random_variants(original, rng)
        rows += [(label, f"{label}:{kind}", data) for kind, data in copies.items()]
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    for name in ("cell.png", "color.png", "microaneurysms.png", "phantom.png", "text.png"):
        if (folder / name).is_file():
            rows.append((name, name, (folder / name).read_bytes()))
    if faces and (folder / "lfw_subset.npy").is_file():
        chosen = np.load(folder / "lfw_subset.npy")[: min(first_face + faces, 100)]  # the first 100 are faces
        for n, face in enumerate(chosen[first_face:], start=first_face):
            picture = Image.fromarray((face * 255).astype(np.uint8)).resize((100, 100), Image.Resampling.BICUBIC)
            rows.append((f"face{n}", f"face{n}", _png(picture)))
    return rows


def describe(rows, embedder):
    """Hashes and vector of each file, through the upload's and the embedding pipeline's code,
    and the seconds each file's hashing took: ``(all three hashes, the 64-bit one alone)``."""
    from gallery.catalogue.perceptual_hash import perceptual_hashes, phash
    from indexer.images import make_thumbnail, open_rgb, prepare_image

    hashes, vectors, seconds = [], [], []
    for _, _, data in rows:
        _, picture = prepare_image(data, max_pixels=100_000_000)
        make_thumbnail(picture, in_place=True)
        all_three, found = timed(perceptual_hashes, picture)
        one, _ = timed(phash, picture, hash_size=8)
        hashes.append(found)
        seconds.append((all_three, one))
    for start in range(0, len(rows), 16):
        batch = [open_rgb(data, min_size=embedder.image_size) for _, _, data in rows[start : start + 16]]
        vectors.append(embedder.encode_images(batch))
    return hashes, np.vstack(vectors), seconds


def evaluate(labels: list[str], names: list[str], hashes: list, vectors: np.ndarray, rule) -> dict:
    from gallery.indexing.duplicates import connected_groups, near_duplicate_pairs

    ids = np.arange(len(labels))
    found = near_duplicate_pairs(ids, vectors, hashes, range(len(labels)), rule=rule)
    group_of = {}
    for n, members in enumerate(connected_groups(found)):
        group_of |= {member: n for member in members}
    tp = fp = fn = 0
    for a, b in itertools.combinations(range(len(labels)), 2):
        same, grouped = labels[a] == labels[b], a in group_of and group_of.get(a) == group_of.get(b)
        tp += same and grouped
        fp += grouped and not same
        fn += same and not grouped
    kinds = {}  # per kind of copy: is it in its original's group?
    originals = {label: n for n, name in enumerate(names) if name.endswith(":original") for label in [labels[n]]}
    for n, name in enumerate(names):
        kind = name.partition(":")[2]
        if kind and kind != "original":
            kinds.setdefault(kind, []).append(n in group_of and group_of.get(originals[labels[n]]) == group_of[n])
    return {
        "kinds": {kind: float(np.mean(found)) for kind, found in kinds.items()},
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "true pairs found": tp,
        "false pairs": fp,
        "missed pairs": fn,
    }


# The service's rule before the 256-bit hashes, with its defaults then, to compare with.
BEFORE_DEFAULTS = {"min_cosine": 0.85, "max_phash_distance": 12, "cosine_alone": 0.97, "max_phash256_distance": -1}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="random copies drawn with this seed (default: the fixed ones)")
    parser.add_argument("--faces", type=int, default=100, help="LFW faces added as distinct photos")
    parser.add_argument("--first-face", type=int, default=0, help="the first of them (0-99)")
    parser.add_argument("--sweep", action="store_true", help="also precision and recall per 256-bit distance and per least cosine")
    parser.add_argument("--config-dir", default=os.environ.get("CLIP_MODEL_CONFIG_DIR", ""))
    args = parser.parse_args(argv)
    _setup_django()
    from gallery.catalogue.perceptual_hash import (
        PerceptualHashes,
        crop_tolerant_distance,
        hash_distance,
    )
    from gallery.indexing.duplicates import DuplicateRule
    from indexer.embedding import ModelSpec, get_embedder

    spec = ModelSpec(
        model=os.environ.get("CLIP_MODEL", "ViT-B-32"),
        pretrained=os.environ.get("CLIP_PRETRAINED", "random"),
        config_dir=args.config_dir,
    )
    embedder = get_embedder(spec)
    rows = generated_set(args.faces, seed=args.seed, first_face=args.first_face)
    labels, names = [label for label, _, _ in rows], [name for _, name, _ in rows]
    hashes, vectors, seconds = describe(rows, embedder)
    only_64 = [PerceptualHashes(phash=h.phash) for h in hashes]  # as rows from before the 256-bit hashes
    rule = DuplicateRule.from_settings()
    before = DuplicateRule(**BEFORE_DEFAULTS)
    hashes_only = replace(rule, min_cosine=-1.0, cosine_alone=2.0)
    rules = {
        f"64-bit pHash alone (distance <= {rule.max_phash_distance})": (hashes_only, only_64),
        f"256-bit crop-tolerant pHash alone (distance <= {rule.max_phash256_distance})": (hashes_only, hashes),
        f"CLIP alone (cosine >= {rule.cosine_alone})": (rule, [PerceptualHashes()] * len(rows)),
        "before: cosine >= 0.85 and 64-bit distance <= 12": (before, only_64),
        f"older rows: cosine >= {rule.min_cosine} and 64-bit distance <= {rule.max_phash_distance}": (rule, only_64),
        f"service: cosine >= {rule.min_cosine} and 256-bit distance <= {rule.max_phash256_distance}": (rule, hashes),
    }
    results = {name: evaluate(labels, names, h, vectors, r) for name, (r, h) in rules.items()}
    same, other = [], []
    distances = {"64": ([], []), "256": ([], [])}
    for a, b in itertools.combinations(range(len(rows)), 2):
        is_same = labels[a] == labels[b]
        (same if is_same else other).append(float(vectors[a] @ vectors[b]))
        distances["64"][not is_same].append(hash_distance(hashes[a].phash, hashes[b].phash))
        distances["256"][not is_same].append(crop_tolerant_distance(hashes[a], hashes[b]))
    originals = sum(1 for name in names if name.endswith(":original"))
    copies = sum(1 for name in names if ":" in name) - originals
    faces = sum(1 for name in names if name.startswith("face"))
    kinds = list(next(iter(results.values()))["kinds"])
    metrics = ["precision", "recall", "true pairs found", "false pairs", "missed pairs"]
    per_file = np.asarray(seconds) * 1000
    copies_set = "the issue's fixed copies" if args.seed is None else f"random copies, seed {args.seed}"
    lines = [
        f"Near-duplicates with {embedder.model_id} on {len(rows)} images ({copies} copies of "
        f"{originals} sample photos, {copies_set}; {_faces(args.first_face, faces)}; "
        f"{len(set(labels))} distinct photos in all); {machine()}",
        "",
        table(["rule", *metrics], [[name, *(result[m] for m in metrics)] for name, result in results.items()]),
        "",
        "Copies grouped with their original, by kind of copy:",
        "",
        table(["rule", *kinds], [[name, *(result["kinds"][k] for k in kinds)] for name, result in results.items()]),
        "",
        table(
            ["pairs", "count", "CLIP cosine min / median / max", "64-bit distance", "256-bit crop-tolerant distance"],
            [
                ["copies of one photo", len(same), _spread(same), _spread(distances["64"][0]), _spread(distances["256"][0])],
                ["distinct photos", len(other), _spread(other), _spread(distances["64"][1]), _spread(distances["256"][1])],
            ],
        ),
        "",
        f"Hashing per upload (512-pixel thumbnail, median / p95 of {len(rows)}): all three hashes "
        f"{np.median(per_file[:, 0]):.2f} / {np.percentile(per_file[:, 0], 95):.2f} ms; the 64-bit pHash alone "
        f"{np.median(per_file[:, 1]):.2f} / {np.percentile(per_file[:, 1], 95):.2f} ms",
    ]
    if args.sweep:
        sweep = []
        for limit in range(40, 101, 4):
            result = evaluate(labels, names, hashes, vectors, replace(hashes_only, max_phash256_distance=limit))
            sweep.append([limit, result["precision"], result["recall"], result["false pairs"], result["missed pairs"]])
        lines += ["", "256-bit crop-tolerant pHash alone, by largest distance allowed:", ""]
        lines.append(table(["distance <=", "precision", "recall", "false pairs", "missed pairs"], sweep))
        sweep = []
        for least in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
            result = evaluate(labels, names, hashes, vectors, replace(rule, min_cosine=least))
            sweep.append([least, result["precision"], result["recall"], result["false pairs"], result["missed pairs"]])
        lines += ["", f"Service rule (256-bit distance <= {rule.max_phash256_distance}), by least cosine:", ""]
        lines.append(table(["cosine >=", "precision", "recall", "false pairs", "missed pairs"], sweep))
    out = "\n".join(lines)
    print(out)
    return out


def _faces(first: int, count: int) -> str:
    return f"LFW faces {first}-{first + count - 1}" if count else "no faces"


def _spread(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.min():.3g} / {np.median(values):.3g} / {values.max():.3g}"


if __name__ == "__main__":
    main()

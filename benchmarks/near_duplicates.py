"""Precision and recall of near-duplicate detection (gallery/duplicates.py) on a generated set.

    .venv/bin/python -m benchmarks.near_duplicates [--faces 100] [--config-dir DIR]

Each sample photo (gallery/samples.py) comes with five copies: resized to half, re-compressed
as a JPEG at quality 35, cropped by 5% a side, colour-shifted (saturation +15%, brightness +6%,
a small per-channel offset), and resized to 60% plus re-compressed. Distinct photos are the
originals themselves, five more scikit-image photos and, as hard negatives, faces from
scikit-image's LFW subset (small, similar-looking portraits). Every file goes through the
upload's decode and perceptual hash and the embedding pipeline's decode and model. A pair
counts as found when the two images end up in one group (union-find over matched pairs, as the
service groups them), so precision and recall are over pairs.

Three rules are reported: pHash alone (distance <= DUPLICATE_MAX_PHASH_DISTANCE), CLIP alone
(cosine >= DUPLICATE_COSINE_ALONE, the rule for rows without a hash) and both (the service's
rule: cosine >= DUPLICATE_MIN_COSINE and the hash distance). The model is CLIP_MODEL /
CLIP_PRETRAINED from the environment (random ViT-B-32 weights when unset).
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

from benchmarks.report import machine, table


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


def generated_set(faces: int) -> list[tuple[str, str, bytes]]:
    """``(label, name, file bytes)``: images with one label are copies of one photo."""
    from gallery.samples import available_samples

    rows = []
    for sample in available_samples():
        original = Image.open(sample.path).convert("RGB")
        label = Path(sample.filename).stem
        rows.append((label, f"{label}:original", sample.path.read_bytes()))
        rows += [(label, f"{label}:{kind}", data) for kind, data in variants(original).items()]
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    for name in ("cell.png", "color.png", "microaneurysms.png", "phantom.png", "text.png"):
        if (folder / name).is_file():
            rows.append((name, name, (folder / name).read_bytes()))
    if faces and (folder / "lfw_subset.npy").is_file():
        for n, face in enumerate(np.load(folder / "lfw_subset.npy")[:faces]):  # the first 100 are faces
            picture = Image.fromarray((face * 255).astype(np.uint8)).resize((100, 100), Image.Resampling.BICUBIC)
            rows.append((f"face{n}", f"face{n}", _png(picture)))
    return rows


def describe(rows, embedder):
    """Hash and vector of each file, through the upload's and the embedding pipeline's code."""
    from gallery.perceptual_hash import perceptual_hash
    from indexer.images import make_thumbnail, open_rgb, prepare_image

    hashes, vectors = [], []
    for _, _, data in rows:
        _, picture = prepare_image(data, max_pixels=100_000_000)
        make_thumbnail(picture, in_place=True)
        hashes.append(perceptual_hash(picture))
    for start in range(0, len(rows), 16):
        batch = [open_rgb(data, min_size=embedder.image_size) for _, _, data in rows[start : start + 16]]
        vectors.append(embedder.encode_images(batch))
    return hashes, np.vstack(vectors)


def evaluate(labels: list[str], names: list[str], hashes: list[str], vectors: np.ndarray, rule) -> dict:
    from gallery.duplicates import connected_groups, near_duplicate_pairs

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


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100, help="LFW faces added as distinct photos")
    parser.add_argument("--config-dir", default=os.environ.get("CLIP_MODEL_CONFIG_DIR", ""))
    args = parser.parse_args(argv)
    _setup_django()
    from gallery.duplicates import DuplicateRule
    from gallery.perceptual_hash import hash_distance
    from indexer.embedding import ModelSpec, get_embedder

    spec = ModelSpec(
        model=os.environ.get("CLIP_MODEL", "ViT-B-32"),
        pretrained=os.environ.get("CLIP_PRETRAINED", "random"),
        config_dir=args.config_dir,
    )
    embedder = get_embedder(spec)
    rows = generated_set(args.faces)
    labels = [label for label, _, _ in rows]
    hashes, vectors = describe(rows, embedder)
    rule = DuplicateRule.from_settings()
    rules = {
        f"pHash alone (distance <= {rule.max_phash_distance})": replace(rule, min_cosine=-1.0, cosine_alone=2.0),
        f"CLIP alone (cosine >= {rule.cosine_alone})": replace(rule, min_cosine=rule.cosine_alone, max_phash_distance=64),
        f"both (cosine >= {rule.min_cosine} and distance <= {rule.max_phash_distance})": rule,
    }
    results = {name: evaluate(labels, [n for _, n, _ in rows], hashes, vectors, r) for name, r in rules.items()}
    same, other = [], []
    distances_same, distances_other = [], []
    for a, b in itertools.combinations(range(len(rows)), 2):
        (same if labels[a] == labels[b] else other).append(float(vectors[a] @ vectors[b]))
        (distances_same if labels[a] == labels[b] else distances_other).append(hash_distance(hashes[a], hashes[b]))
    originals = sum(1 for _, name, _ in rows if name.endswith(":original"))
    copies = sum(1 for _, name, _ in rows if ":" in name) - originals
    kinds = list(next(iter(results.values()))["kinds"])
    metrics = ["precision", "recall", "true pairs found", "false pairs", "missed pairs"]
    out = "\n".join(
        [
            f"Near-duplicates with {embedder.model_id} on {len(rows)} images ({copies} copies of "
            f"{originals} sample photos; {len(set(labels))} distinct photos in all); {machine()}",
            "",
            table(["rule", *metrics], [[name, *(result[m] for m in metrics)] for name, result in results.items()]),
            "",
            "Copies grouped with their original, by kind of copy:",
            "",
            table(["rule", *kinds], [[name, *(result["kinds"][k] for k in kinds)] for name, result in results.items()]),
            "",
            table(
                ["pairs", "count", "CLIP cosine min / median / max", "pHash distance min / median / max"],
                [
                    ["copies of one photo", len(same), _spread(same), _spread(distances_same)],
                    ["distinct photos", len(other), _spread(other), _spread(distances_other)],
                ],
            ),
        ]
    )
    print(out)
    return out


def _spread(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.min():.3g} / {np.median(values):.3g} / {values.max():.3g}"


if __name__ == "__main__":
    main()

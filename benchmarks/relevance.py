"""Relevance of the configured model: text->image Recall@1/5/10 and image->image precision@k.

    .venv/bin/python -m benchmarks.relevance --folder PHOTOS --labels labels.csv [-k 3]
    .venv/bin/python -m benchmarks.relevance            # the sample photos that ship in packages

labels.csv has a header and the columns `file` (relative to the folder), `caption` (a text that
should find that file; may be empty) and `label` (images with the same label count as relevant
to each other for image->image precision; may be empty). The model is CLIP_MODEL /
CLIP_PRETRAINED from the environment (random ViT-B-32 weights when unset, which measures
nothing but the harness). Search is exact (numpy), so this measures the model, not the index.

Without a folder the harness uses the sample photographs, each with a fitting caption
(gallery/catalogue/samples.py), plus three variants of each (crop, mirror, small low-quality JPEG)
labelled like their original, for image->image precision@3.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks.report import table
from gallery.catalogue.samples import available_samples
from indexer.embedding import ModelSpec, get_embedder
from indexer.images import open_rgb


def sample_set(folder: Path) -> Path:
    """Write the sample photos and their variants to `folder`; return the labels CSV."""
    rows = []
    for sample in available_samples():
        image = Image.open(sample.path).convert("RGB")
        name = Path(sample.filename).stem
        w, h = image.size
        variants = {
            "": image,
            "-crop": image.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
            "-mirror": ImageOps.mirror(image),
            "-small": image.resize((max(w // 3, 32), max(h // 3, 32))),
        }
        for suffix, variant in variants.items():
            path = folder / f"{name}{suffix}.jpg"
            variant.save(path, quality=50 if suffix == "-small" else 90)
            rows.append({"file": path.name, "caption": sample.query if not suffix else "", "label": name})
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "caption", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return labels


def evaluate(folder: Path, labels: Path, *, k: int, spec: ModelSpec) -> dict:
    embedder = get_embedder(spec)
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    vectors = np.vstack(
        [embedder.encode_images([open_rgb((folder / row["file"]).read_bytes())]) for row in rows]
    )
    result = {"model": embedder.model_id, "images": len(rows)}
    captions = [(i, row["caption"]) for i, row in enumerate(rows) if row.get("caption")]
    if captions:
        texts = embedder.encode_texts([caption for _, caption in captions])
        ranks = []
        for (target, _), text in zip(captions, texts):
            order = np.argsort(-(vectors @ text))
            ranks.append(int(np.where(order == target)[0][0]) + 1)
        ranks = np.asarray(ranks)
        result |= {f"text->image R@{n}": float(np.mean(ranks <= n)) for n in (1, 5, 10)}
        result["queries"] = len(captions)
    labelled = [i for i, row in enumerate(rows) if row.get("label")]
    if labelled:
        precisions = []
        for i in labelled:
            scores = vectors @ vectors[i]
            scores[i] = -np.inf  # not itself
            top = np.argsort(-scores)[:k]
            precisions.append(np.mean([rows[j].get("label") == rows[i]["label"] for j in top]))
        result[f"image->image P@{k}"] = float(np.mean(precisions))
    return result


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--config-dir", default=os.environ.get("CLIP_MODEL_CONFIG_DIR", ""))
    args = parser.parse_args(argv)
    spec = ModelSpec(
        model=os.environ.get("CLIP_MODEL", "ViT-B-32"),
        pretrained=os.environ.get("CLIP_PRETRAINED", "random"),
        config_dir=args.config_dir,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            folder, labels = args.folder, args.labels or args.folder / "labels.csv"
        else:
            folder = Path(tmp)
            labels = sample_set(folder)
        result = evaluate(folder, labels, k=args.k, spec=spec)
    metrics = [key for key in result if "@" in key]
    out = "\n".join(
        [
            f"Relevance of {result['model']} on {result['images']} images, {result.get('queries', 0)} text queries",
            "",
            table(metrics, [[result[key] for key in metrics]]),
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

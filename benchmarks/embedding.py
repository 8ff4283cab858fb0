"""Embedding throughput: the model alone on preprocessed tensors (the limit) against the whole
pipeline on real JPEG/PNG files of mixed sizes (read, decode, EXIF, resize, model).

    .venv/bin/python -m benchmarks.embedding [--images 64] [--batch-sizes 8,16,32] [--workers 1,2]

The photos are the sample photographs shipped in scikit-image/scikit-learn, saved at 0.3 to
12 megapixels. Random weights cost exactly what real ones do.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.report import machine, table
from gallery.catalogue.samples import available_samples
from indexer.embedding import ModelSpec, get_embedder
from indexer.images import open_rgb
from indexer.pipeline import embed_sources

# (longest side, format): from a phone screenshot to a 12 MP camera JPEG.
SIZES = [(640, "JPEG"), (1024, "PNG"), (2048, "JPEG"), (4000, "JPEG")]


def make_files(folder: Path, count: int) -> list[Path]:
    photos = [Image.open(sample.path).convert("RGB") for sample in available_samples()]
    files = []
    for n, (photo, (side, fmt)) in enumerate(zip(itertools.cycle(photos), itertools.cycle(SIZES))):
        if n == count:
            break
        scale = side / max(photo.size)
        resized = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
        path = folder / f"photo{n:03d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        resized.save(path, format=fmt, quality=90)
        files.append(path)
    return files


def raw_rate(embedder, tensors, batch_size: int) -> float:
    embedder.encode_image_batch(np.stack(tensors[:batch_size]))  # warm-up
    started = time.perf_counter()
    for start in range(0, len(tensors), batch_size):
        embedder.encode_image_batch(np.stack(tensors[start : start + batch_size]))
    return len(tensors) / (time.perf_counter() - started)


def pipeline_rate(embedder, files, batch_size: int, workers: int) -> float:
    sources = [(path, path.read_bytes) for path in files]
    started = time.perf_counter()
    done = sum(len(batch.keys) for batch in embed_sources(sources, embedder, batch_size=batch_size, workers=workers))
    assert done == len(files)
    return len(files) / (time.perf_counter() - started)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-sizes", default="8,16,32")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args(argv)
    embedder = get_embedder(ModelSpec(model=args.model, pretrained="random", config_dir=args.config_dir))
    with tempfile.TemporaryDirectory() as folder:
        files = make_files(Path(folder), args.images)
        megapixels = sum(Image.open(f).width * Image.open(f).height for f in files) / len(files) / 1e6
        tensors = [embedder.preprocess(open_rgb(f.read_bytes(), min_size=embedder.image_size)) for f in files]
        rows = []
        for batch_size in map(int, args.batch_sizes.split(",")):
            raw = raw_rate(embedder, tensors, batch_size)
            for workers in map(int, args.workers.split(",")):
                piped = pipeline_rate(embedder, files, batch_size, workers)
                rows.append([batch_size, workers, raw, piped, piped / raw])
    out = "\n".join(
        [
            f"Embedding throughput, {args.model} on {embedder.device}: {machine()}",
            f"{len(files)} files, mean {megapixels:.1f} MP (640 px JPEG to 12 MP JPEG, 1024 px PNG)",
            "",
            table(["batch", "decode workers", "raw model img/s", "pipeline img/s", "pipeline / raw"], rows),
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

"""torch against ONNX Runtime (fp32 and int8) for the same model and inputs: text query
latency, image batch throughput, and the pipeline ratio on real files.

    .venv/bin/python -m benchmarks.runtimes [--model ViT-B-32] [--images 96] [--batch-size 16]

Exports the model (random weights: the cost is the same as real ones) to a temporary folder.
HTTP end-to-end figures per runtime: `python -m benchmarks.http_search --runtime onnx-int8`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.embedding import make_files, pipeline_rate, raw_rate
from benchmarks.report import machine, percentile_ms, table
from indexer.embedding import ModelSpec, get_embedder
from indexer.images import open_rgb
from indexer.onnx_export import export_onnx


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args(argv)
    torch_spec = ModelSpec(model=args.model, pretrained="random", config_dir=args.config_dir)
    reference = get_embedder(torch_spec)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "onnx"
        started = time.perf_counter()
        export_onnx(reference, export_dir, int8=True)
        export_seconds = time.perf_counter() - started
        photos = Path(tmp) / "photos"
        photos.mkdir()
        files = make_files(photos, args.images)
        texts = [f"a photo of thing number {n}" for n in range(args.queries)]
        ref_images = ref_texts = None
        for runtime in ("torch", "onnx", "onnx-int8"):
            spec = ModelSpec(model=args.model, pretrained="random", config_dir=args.config_dir, runtime=runtime)
            embedder = get_embedder(spec, onnx_dir=lambda: export_dir)
            embedder.encode_texts(["warm up"])
            latencies = []
            for text in texts:
                started = time.perf_counter()
                embedder.encode_texts([text])
                latencies.append(time.perf_counter() - started)
            tensors = [embedder.preprocess(open_rgb(f.read_bytes(), min_size=embedder.image_size)) for f in files]
            raw = raw_rate(embedder, tensors, args.batch_size)
            piped = pipeline_rate(embedder, files, args.batch_size, 2)
            images = embedder.encode_images([open_rgb(f.read_bytes()) for f in files[:16]])
            text_vectors = embedder.encode_texts(texts[:16])
            if ref_images is None:
                ref_images, ref_texts = images, text_vectors
            image_cos = np.sum(images * ref_images, axis=1)
            text_cos = np.sum(text_vectors * ref_texts, axis=1)
            rows.append([
                runtime, percentile_ms(latencies, 50), percentile_ms(latencies, 90), raw, piped, piped / raw,
                float(min(image_cos.min(), text_cos.min())),
            ])
    out = "\n".join(
        [
            f"Runtimes for {args.model} on CPU: {machine()}; export took {export_seconds:.0f} s",
            f"{len(files)} files for the pipeline (640 px to 12 MP), batch {args.batch_size}, 2 decode threads",
            "",
            table(["runtime", "text p50 ms", "text p90 ms", "raw img/s", "pipeline img/s", "pipeline / raw", "min cosine to torch"], rows),
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

"""Compare an ONNX runtime with torch on real photos before switching CLIP_RUNTIME."""

from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from gallery.catalogue.samples import available_samples
from gallery.engine import embedder, onnx_models
from indexer.embedding import ModelLoadError, get_embedder
from indexer.embedding.agreement import MIN_COSINE, MIN_TOP_K, K, top_k_overlap
from indexer.images import open_rgb

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class Command(BaseCommand):
    help = "Embed a sample with torch and with an ONNX runtime; report cosine and top-k agreement of searches."

    def add_arguments(self, parser):
        parser.add_argument("--runtime", default="onnx-int8", choices=["onnx", "onnx-int8"])
        parser.add_argument("--folder", type=Path, help="your own photos (default: the sample photos)")
        parser.add_argument("--limit", type=int, default=200, help="at most this many photos")
        parser.add_argument("-k", type=int, default=K)

    def handle(self, *args, runtime, folder, limit, k, **options):
        spec = embedder.model_spec()
        try:
            torch_model = get_embedder(spec.as_torch())
            onnx_spec = spec.with_runtime(runtime)
            onnx_model = get_embedder(onnx_spec, onnx_files=onnx_models.ExportFiles(onnx_spec))
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from None
        if folder:
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)[:limit]
            queries = []
        else:
            samples = available_samples()[:limit]
            files, queries = [s.path for s in samples], [s.query for s in samples]
        if len(files) < 2:
            raise CommandError("Need at least two photos to compare.")
        images = [open_rgb(path.read_bytes(), min_size=torch_model.image_size) for path in files]
        a, b = torch_model.encode_images(images), onnx_model.encode_images(images)
        image_cos = np.sum(a * b, axis=1)
        rows = [("image vectors", image_cos)]
        agreement = [top_k_overlap(a, b, a, b, k=k)]  # image -> image searches
        if queries:
            ta, tb = torch_model.encode_texts(queries), onnx_model.encode_texts(queries)
            rows.append(("text vectors", np.sum(ta * tb, axis=1)))
            agreement.append(top_k_overlap(ta, tb, a, b, k=k))
        self.stdout.write(f"{onnx_model.model_id} against {torch_model.model_id}, {len(files)} photos, {len(queries)} texts")
        for name, cos in rows:
            self.stdout.write(f"  {name:14} cosine mean {cos.mean():.5f}  min {cos.min():.5f}")
        self.stdout.write(f"  top-{k} agreement of searches: {np.mean(agreement):.3f} (shared results / {k})")
        safe = min(cos.min() for _, cos in rows) >= MIN_COSINE and np.mean(agreement) >= MIN_TOP_K
        verdict = "safe to switch" if safe else "NOT safe: rankings change noticeably; stay on torch or onnx (fp32)"
        self.stdout.write((self.style.SUCCESS if safe else self.style.WARNING)(f"Verdict: {verdict}."))

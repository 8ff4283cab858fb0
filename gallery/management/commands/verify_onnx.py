"""Compare an ONNX runtime with torch on real photos before switching CLIP_RUNTIME."""

from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from gallery import clip, onnx_models
from gallery.samples import available_samples
from indexer.embedding import ModelLoadError, get_embedder
from indexer.images import open_rgb

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# Below these, int8 changes rankings that people would notice.
SAFE_MIN_COSINE, SAFE_AGREEMENT = 0.99, 0.9


class Command(BaseCommand):
    help = "Embed a sample with torch and with an ONNX runtime; report cosine and top-k agreement of searches."

    def add_arguments(self, parser):
        parser.add_argument("--runtime", default="onnx-int8", choices=["onnx", "onnx-int8"])
        parser.add_argument("--folder", type=Path, help="your own photos (default: the sample photos)")
        parser.add_argument("--limit", type=int, default=200, help="at most this many photos")
        parser.add_argument("-k", type=int, default=5)

    def handle(self, *args, runtime, folder, limit, k, **options):
        spec = clip.model_spec()
        try:
            torch_model = get_embedder(spec.as_torch())
            onnx_spec = spec.__class__(**{**spec.__dict__, "runtime": runtime})
            onnx_model = get_embedder(onnx_spec, onnx_dir=lambda: onnx_models.local_dir(onnx_spec))
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
        agreement = [_agreement(a, b, a, b, k)]  # image -> image searches
        if queries:
            ta, tb = torch_model.encode_texts(queries), onnx_model.encode_texts(queries)
            rows.append(("text vectors", np.sum(ta * tb, axis=1)))
            agreement.append(_agreement(ta, tb, a, b, k))
        self.stdout.write(f"{onnx_model.model_id} against {torch_model.model_id}, {len(files)} photos, {len(queries)} texts")
        for name, cos in rows:
            self.stdout.write(f"  {name:14} cosine mean {cos.mean():.5f}  min {cos.min():.5f}")
        self.stdout.write(f"  top-{k} agreement of searches: {np.mean(agreement):.3f} (shared results / {k})")
        safe = min(cos.min() for _, cos in rows) >= SAFE_MIN_COSINE and np.mean(agreement) >= SAFE_AGREEMENT
        verdict = "safe to switch" if safe else "NOT safe: rankings change noticeably; stay on torch or onnx (fp32)"
        self.stdout.write((self.style.SUCCESS if safe else self.style.WARNING)(f"Verdict: {verdict}."))


def _agreement(queries_a, queries_b, index_a, index_b, k) -> float:
    """Mean overlap of the top-k found by each runtime (each searching its own vectors)."""
    k = min(k, len(index_a))
    top_a = np.argsort(-(queries_a @ index_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ index_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)]))

"""Export an OpenCLIP model's image and text towers to ONNX, optionally int8-quantized.

A folder holds ``image.onnx`` and ``text.onnx`` (fp32), ``image-int8.onnx`` and ``text-int8.onnx``
(dynamic int8 quantization of the weights, when asked) and ``manifest.json``: the source model id,
its weights, the opset, the preprocessing, and a checksum of every file.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from indexer.embedding import ClipEmbedder
from indexer.index import file_sha256

OPSET = 18
MANIFEST = "manifest.json"
FILES = {"fp32": ("image.onnx", "text.onnx"), "int8": ("image-int8.onnx", "text-int8.onnx")}


def export_onnx(embedder: ClipEmbedder, out_dir: Path, *, int8: bool = True) -> dict:
    import torch
    from torch.export import Dim

    if embedder.is_random and not embedder.spec.is_random:
        raise ValueError("the configured weights did not load (random fallback); export needs the real model")
    model = embedder._model.float().cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    image_file, text_file = (out_dir / name for name in FILES["fp32"])
    # A batch of at least 2 in the example: a batch-1 example silently fixes the batch size at 1.
    images = torch.randn(2, 3, embedder.image_size, embedder.image_size)
    tokens = embedder._tokenizer(["a photo", "a drawing"])
    # One self-contained file per tower (every CLIP tower is far below ONNX's 2 GB limit).
    options = {"opset_version": OPSET, "dynamo": True, "dynamic_shapes": ({0: Dim("batch")},), "external_data": False}
    torch.onnx.export(_tower(model.encode_image), (images,), str(image_file), **options)
    torch.onnx.export(_tower(model.encode_text), (tokens,), str(text_file), **options)
    precisions = ["fp32"]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for source, target in zip(FILES["fp32"], FILES["int8"]):
            quantize_dynamic(str(out_dir / source), str(out_dir / target), weight_type=QuantType.QInt8)
        precisions.append("int8")
    manifest = {
        "source_model": embedder.model_id,
        "weights": embedder.spec.pretrained if not embedder.spec.is_checkpoint_file else embedder.weights_id,
        "opset": OPSET,
        "precisions": precisions,
        "dim": embedder.dim,
        "image_size": embedder.image_size,
        "preprocess": _jsonable(embedder._model.visual.preprocess_cfg),
        "tokenizer": embedder.spec.model,
        "files": {name: file_sha256(out_dir / name) for p in precisions for name in FILES[p]},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _tower(encode):
    """One encoder as a module of its own (in eval mode), so each tower exports alone."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = encode.__self__

        def forward(self, x):
            return encode(x)

    return Tower().eval()


def _jsonable(cfg: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dict(cfg).items()}

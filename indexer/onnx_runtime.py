"""CLIP through ONNX Runtime: the same preprocessing, tokenizer and output contract
(L2-normalised float32) as the torch path, from a folder written by :mod:`indexer.onnx_export`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.embedding import ModelLoadError, ModelSpec, _normalised_array
from indexer.index import file_sha256
from indexer.onnx_export import FILES, MANIFEST

RUNTIMES = {"onnx": "fp32", "onnx-int8": "int8"}


class OnnxEmbedder:
    """Drop-in for :class:`indexer.embedding.ClipEmbedder`; ``model_id`` names the precision, so
    vectors of different runtimes are never mixed in one index."""

    def __init__(self, spec: ModelSpec, folder: Path, *, expected_source: str):
        from indexer.torch_compat import ensure_torchvision_importable

        ensure_torchvision_importable()
        import onnxruntime
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.spec = spec
        self.precision = RUNTIMES[spec.runtime]
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"No ONNX export in {folder} ({exc}); run `manage.py export_onnx` first.") from None
        if manifest["source_model"] != expected_source:
            raise ModelLoadError(
                f"The ONNX export was made from {manifest['source_model']}, but CLIP_MODEL/CLIP_PRETRAINED "
                f"configure {expected_source}: run `manage.py export_onnx` again."
            )
        if self.precision not in manifest["precisions"]:
            raise ModelLoadError(f"The ONNX export has no {self.precision} model; run `manage.py export_onnx --int8`.")
        image_file, text_file = (folder / name for name in FILES[self.precision])
        for path in (image_file, text_file):
            if file_sha256(path) != manifest["files"][path.name]:
                raise ModelLoadError(f"{path} does not match the checksum in its manifest; export again.")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ONNX_THREADS", "0"))  # 0: all cores
        providers = ["CPUExecutionProvider"]
        self._image = onnxruntime.InferenceSession(str(image_file), options, providers=providers)
        self._text = onnxruntime.InferenceSession(str(text_file), options, providers=providers)
        self.preprocess = image_transform_v2(PreprocessCfg(**manifest["preprocess"]), is_train=False)
        self._tokenizer = open_clip.get_tokenizer(manifest["tokenizer"])
        self.dim = int(manifest["dim"])
        self.image_size = int(manifest["image_size"])
        self.device = "cpu"
        self.source_model = manifest["source_model"]

    @property
    def model_id(self) -> str:
        return f"{self.source_model}#onnx-{self.precision}"

    @property
    def is_random(self) -> bool:
        return self.source_model.endswith("/random")

    def encode_images(self, images) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        return self.encode_image_batch(torch.stack([self.preprocess(image) for image in images]))

    def encode_image_batch(self, batch) -> np.ndarray:
        array = batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
        (features,) = self._image.run(None, {self._image.get_inputs()[0].name: array.astype(np.float32)})
        return _normalised_array(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self._tokenizer(list(texts)).numpy()
        (features,) = self._text.run(None, {self._text.get_inputs()[0].name: tokens})
        return _normalised_array(features)

"""What every CLIP backend shares: the model spec, the embedder protocol, the one error, and
the output contract (L2-normalised float32 numpy rows).

Nothing here imports torch or onnxruntime: the web tier of an ONNX deployment runs without torch.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

# ViT-B-32 trained on LAION-2B: 66.6% ImageNet zero-shot, 512-d vectors, ~80 ms per image on
# two CPU cores. The best quality a CPU-only gallery can embed at interactive speed.
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RANDOM = "random"

TORCH = "torch"
# ONNX Runtime on the export's fp32 or int8 towers; ``model_id`` names the precision.
ONNX_PRECISIONS = {"onnx": "fp32", "onnx-int8": "int8"}
RUNTIMES = (TORCH, *ONNX_PRECISIONS)
AUTO = "auto"  # measured once per host (indexer.runtime_choice); resolved before get_embedder


class ModelLoadError(RuntimeError):
    """The configured model or its weights cannot be loaded. The message says what to set."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load. ``pretrained`` is an open_clip tag, a checkpoint path, or ``random``."""

    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    device: str = ""  # "" picks CUDA when present
    config_dir: str = ""  # extra open_clip model configs (JSON) to register
    cache_dir: str = ""  # where open_clip keeps downloaded weights
    runtime: str = TORCH  # one of RUNTIMES, or AUTO before it is resolved

    @property
    def is_random(self) -> bool:
        return self.pretrained == RANDOM

    @property
    def is_checkpoint_file(self) -> bool:
        return os.sep in self.pretrained or self.pretrained.endswith(
            (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
        )

    def as_random(self) -> ModelSpec:
        return replace(self, pretrained=RANDOM)

    def with_runtime(self, runtime: str) -> ModelSpec:
        return replace(self, runtime=runtime)

    def as_torch(self) -> ModelSpec:
        return self.with_runtime(TORCH)

    @property
    def torch_model_id(self) -> str:
        """The vector space of the torch model: what an ONNX export is made from."""
        return f"{self.model}/{weights_id(self)}"


class Embedder(Protocol):
    """What the gallery, the pipeline and the exporter use; every backend provides it.

    ``preprocess`` turns a PIL image into a CHW float32 array; ``encode_image_batch`` takes a
    stack of them (N x C x H x W). Every vector returned is an L2-normalised float32 row.
    """

    spec: ModelSpec
    runtime: str
    dim: int
    image_size: int

    @property
    def model_id(self) -> str:
        """Names the vector space: vectors (and indexes) with different ids don't compare."""

    @property
    def is_random(self) -> bool: ...

    def preprocess(self, image: PILImage) -> np.ndarray: ...

    def encode_image_batch(self, batch: np.ndarray) -> np.ndarray: ...

    def encode_images(self, images: Sequence[PILImage]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def empty(dim: int) -> np.ndarray:
    return np.zeros((0, dim), dtype=np.float32)


def weights_id(spec: ModelSpec) -> str:
    """What the vectors' model id says about the weights; fails fast on a missing file.

    An open_clip tag is its own id here; the torch backend checks that the tag exists (this
    module must not import open_clip, which imports torch)."""
    if spec.is_random:
        return RANDOM
    if spec.is_checkpoint_file:
        path = Path(spec.pretrained).expanduser()
        if not path.is_file():
            raise ModelLoadError(
                f"CLIP_PRETRAINED points at {path}, which is not a file. Set it to the "
                f"checkpoint of a {spec.model} model (CLIP_MODEL), or use an open_clip tag."
            )
        return f"{path.name}@{_file_fingerprint(path)}"
    return spec.pretrained


def _file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first MiB: tells checkpoints apart without reading GBs."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]

"""CLIP embedders: one protocol, two backends, one factory (open_clip's shape).

- :mod:`.base`: :class:`ModelSpec`, the :class:`Embedder` protocol, :class:`ModelLoadError`
- :mod:`.torch_backend`: OpenCLIP on torch, the reference
- :mod:`.onnx_backend`: ONNX Runtime on an export, with :mod:`.preprocess` and :mod:`.tokenizer`
  (no torch)
- :mod:`.factory`: :func:`get_embedder` / :func:`clear_embedders`, with the random-weights fallback

Importing this package imports neither torch nor onnxruntime.
"""

from indexer.embedding.base import (
    AUTO,
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    RANDOM,
    RUNTIMES,
    TORCH,
    Embedder,
    ModelLoadError,
    ModelSpec,
    same_weights,
    weights_id,
)
from indexer.embedding.factory import clear_embedders, get_embedder

__all__ = [
    "AUTO", "DEFAULT_MODEL", "DEFAULT_PRETRAINED", "RANDOM", "RUNTIMES", "TORCH",
    "Embedder", "ModelLoadError", "ModelSpec", "clear_embedders", "get_embedder", "same_weights", "weights_id",
]

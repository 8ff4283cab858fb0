"""One embedder per spec and process, like open_clip's factory functions: the single place
that picks the backend and applies the random-weights fallback."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from indexer.embedding.base import AUTO, ONNX_PRECISIONS, RUNTIMES, TORCH, Embedder, ModelLoadError, ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from indexer.embedding.onnx_backend import ExportFiles

logger = logging.getLogger(__name__)

_embedders: dict[ModelSpec, Embedder] = {}
_lock = threading.Lock()


def get_embedder(spec: ModelSpec, *, fallback_to_random: bool = False, onnx_files: ExportFiles | None = None) -> Embedder:
    """The process-wide embedder for ``spec``, loaded on first call.

    With ``fallback_to_random`` a model whose weights cannot be loaded is replaced by the
    same architecture with (deterministic) random weights, and a warning is logged.
    For the ONNX runtimes, ``onnx_files`` is the export's folder, or a callable that gives the
    local path of one of its files (fetched on first use).
    ``CLIP_RUNTIME=auto`` is resolved before this (indexer.runtime_choice).
    """
    with _lock:
        if spec not in _embedders:
            try:
                _embedders[spec] = _load(spec, onnx_files)
            except ModelLoadError as exc:
                if not fallback_to_random or spec.is_random:
                    raise
                logger.warning("%s Falling back to random weights.", exc)
                # random weights are drawn by torch: an ONNX export of them is of no help here
                random_spec = spec.as_random().as_torch()
                if random_spec not in _embedders:
                    _embedders[random_spec] = _load(random_spec, onnx_files)
                _embedders[spec] = _embedders[random_spec]
        return _embedders[spec]


def clear_embedders() -> None:
    with _lock:
        _embedders.clear()


def load_embedder(spec: ModelSpec, *, onnx_files: ExportFiles | None = None) -> Embedder:
    """A new embedder that the process does not keep (to measure runtimes, then let them go)."""
    return _load(spec, onnx_files)


def _load(spec: ModelSpec, onnx_files: ExportFiles | None) -> Embedder:
    if spec.runtime == TORCH:
        from indexer.embedding.torch_backend import TorchEmbedder

        return TorchEmbedder(spec)
    if spec.runtime == AUTO:
        raise ModelLoadError("CLIP_RUNTIME=auto must be resolved to a runtime first (indexer.runtime_choice).")
    if spec.runtime not in ONNX_PRECISIONS or onnx_files is None:
        raise ModelLoadError(f"CLIP_RUNTIME={spec.runtime!r}: use auto, {', '.join(RUNTIMES)}.")
    from indexer.embedding.onnx_backend import OnnxEmbedder

    return OnnxEmbedder(spec, onnx_files, expected_model_id=spec.torch_model_id)


def leave_the_cores_to_the_model() -> None:
    """Numpy's BLAS runs one thread in a web process, which runs the CLIP model for each new query.
    torch (OpenMP) and ONNX Runtime keep a pool of threads that spin for a while after each call,
    and OpenBLAS keeps another: on a host with few cores the two pools take turns at the same
    cores. On 2 AMD EPYC cores (avx2 avx512f avx512_vnni avx512_bf16) a text encoding took 89 ms instead of 41, and the 1,000 x 512
    matrix-vector product after it (the relevance sample) 3.2 ms instead of 0.1
    (docs/performance.md, section 23). What a search does with numpy beside the model (a query
    against the fresh segment, the relevance sample) is matrix-vector sized, and one thread
    serves it as fast. The web entry points (``webapp.wsgi``, which the Lambda handler serves,
    and ``webapp.asgi``) call this once, before serving; the indexer's processes keep every thread for their
    large products (the build's layout and recall measure, near-duplicate blocks)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # for the process: threadpoolctl restores nothing unless used as a context

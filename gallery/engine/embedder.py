"""The process's CLIP model, configured from settings, and a cache of text-query vectors.

``CLIP_RUNTIME=auto`` becomes a runtime here, once per process: torch when no ONNX export is in
storage, otherwise this host's measured choice (indexer.runtime_choice), kept in
``INDEX_CACHE_DIR``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from gallery.engine import onnx_models
from gallery.errors import ModelUnavailable
from indexer.embedding import AUTO, TORCH, Embedder, ModelLoadError, ModelSpec, get_embedder
from indexer.runtime_choice import CHOICE_FILE, Choice, choose_runtime, read_choice
from indexer.timing import timed

_resolved: dict[tuple, tuple[ModelSpec, Choice | None]] = {}
_resolve_lock = threading.Lock()


def model_spec() -> ModelSpec:
    """The model as configured; its runtime may still be ``auto``."""
    return ModelSpec(
        model=settings.CLIP_MODEL,
        pretrained=settings.CLIP_PRETRAINED,
        device=settings.CLIP_DEVICE,
        config_dir=settings.CLIP_MODEL_CONFIG_DIR,
        cache_dir=settings.CLIP_CACHE_DIR,
        runtime=settings.CLIP_RUNTIME,
    )


@contextmanager
def model_errors() -> Iterator[None]:
    """The model's failures as the gallery's :class:`ModelUnavailable`: weights that cannot be
    loaded, and an ONNX export whose tower fails on first use (a checksum, a missing file)."""
    try:
        yield
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc


def embedder(*, fallback_to_random: bool | None = None) -> Embedder:
    """Loaded on first use and kept for the life of the process (a fallback to random weights
    too: later calls get the same embedder). :class:`ModelUnavailable` when the configured
    weights (or their ONNX export) cannot be loaded on this host."""
    if fallback_to_random is None:
        fallback_to_random = settings.CLIP_FALLBACK_TO_RANDOM
    with model_errors():
        spec, _ = runtime_spec()
        onnx_files = onnx_models.ExportFiles(spec) if spec.runtime != TORCH else None
        return get_embedder(spec, fallback_to_random=fallback_to_random, onnx_files=onnx_files)


def runtime_spec(*, measure_again: bool = False) -> tuple[ModelSpec, Choice | None]:
    """The configured spec with ``auto`` resolved, and the choice behind it (``None`` when the
    runtime was set explicitly, or no export exists). Resolved once per process (and cache folder)."""
    spec = model_spec()
    if spec.runtime != AUTO:
        return spec, None
    key = (spec, str(settings.INDEX_CACHE_DIR))
    with _resolve_lock, model_errors():
        if measure_again or key not in _resolved:
            _resolved[key] = _resolve(spec, measure_again)
        return _resolved[key]


def clear_runtime_choice() -> None:
    """Forget this process's resolution of ``auto`` (the host's kept choice stays)."""
    with _resolve_lock:
        _resolved.clear()


def _resolve(spec: ModelSpec, measure_again: bool) -> tuple[ModelSpec, Choice | None]:

    if not onnx_models.export_exists(spec):
        return spec.as_torch(), None
    onnx_spec = spec.with_runtime("onnx")  # the runtimes of one export share its files
    state = Path(settings.INDEX_CACHE_DIR) / CHOICE_FILE
    if not measure_again and not state.exists():
        # a new host of a kind already measured (a fresh serverless instance) takes its choice
        onnx_models.fetch_shared_choice(onnx_spec, state)
    before = read_choice(state)
    choice = choose_runtime(spec, onnx_models.ExportFiles(onnx_spec), state, measure_again=measure_again)
    if before is None or before.measured_at != choice.measured_at:
        onnx_models.share_choice(onnx_spec, choice)
    return spec.with_runtime(choice.runtime), choice


def runtime_summary() -> str:
    """One line for people: the runtime in use on this host and why. Never measures: before this
    process resolved ``auto`` it reports the choice kept on this host, if any."""

    spec = model_spec()
    if spec.runtime != AUTO:
        return f"CLIP runtime: {spec.runtime} (set by CLIP_RUNTIME)."
    resolved = _resolved.get((spec, str(settings.INDEX_CACHE_DIR)))
    choice = resolved[1] if resolved else read_choice(Path(settings.INDEX_CACHE_DIR) / CHOICE_FILE)
    if choice is not None:
        return f"CLIP runtime on this host (CLIP_RUNTIME=auto, measured {choice.measured_at}): {choice.reason}."
    if resolved:
        return "CLIP runtime: torch (CLIP_RUNTIME=auto, and no ONNX export exists: `manage.py export_onnx` makes one)."
    return "CLIP runtime: not chosen yet on this host (CLIP_RUNTIME=auto measures on first use, or `manage.py runtime --measure`)."


def embed_text(text: str) -> np.ndarray:
    """Repeated queries (the gallery's popular searches, paging through results) skip the model."""
    model = embedder()
    return _text_vector(model.model_id, text)


@lru_cache(maxsize=2048)
def _text_vector(model_id: str, text: str) -> np.ndarray:
    # Each new query gets a forward pass of its own: sharing passes between concurrent queries
    # (indexer.embedding.batching) measured slower here for every runtime, since one query
    # already fills the text tower's matrices (77 tokens); docs/performance.md, "Runtimes per CPU".
    with model_errors(), timed("encode"):
        vector = embedder().encode_texts([text])[0]
    vector.flags.writeable = False  # shared between callers
    return vector

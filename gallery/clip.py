"""The process's CLIP model, configured from settings, and a cache of text-query vectors."""

from functools import lru_cache

import numpy as np
from django.conf import settings

from gallery import onnx_models

from indexer.embedding import ClipEmbedder, ModelSpec, get_embedder


def model_spec() -> ModelSpec:
    return ModelSpec(
        model=settings.CLIP_MODEL,
        pretrained=settings.CLIP_PRETRAINED,
        device=settings.CLIP_DEVICE,
        config_dir=settings.CLIP_MODEL_CONFIG_DIR,
        cache_dir=settings.CLIP_CACHE_DIR,
        runtime=settings.CLIP_RUNTIME,
    )


def embedder() -> ClipEmbedder:
    """Loaded on first use and kept for the life of the process."""
    spec = model_spec()
    return get_embedder(
        spec, fallback_to_random=settings.CLIP_FALLBACK_TO_RANDOM, onnx_dir=lambda: onnx_models.local_dir(spec)
    )


def embed_text(text: str) -> np.ndarray:
    """Repeated queries (the gallery's popular searches, paging through results) skip the model."""
    model = embedder()
    return _text_vector(model.model_id, text)


@lru_cache(maxsize=2048)
def _text_vector(model_id: str, text: str) -> np.ndarray:
    vector = embedder().encode_texts([text])[0]
    vector.flags.writeable = False  # shared between callers
    return vector

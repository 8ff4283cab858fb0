"""The reference backend: OpenCLIP on torch (CPU or CUDA).

torch and open_clip are imported inside the loader, so importing this module (and starting
Django, or parsing the Airflow DAG) stays fast.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import urlsplit

import numpy as np

from indexer.embedding.base import DEFAULT_MODEL, TORCH, ModelLoadError, ModelSpec, empty, normalise, weights_id

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

logger = logging.getLogger(__name__)

_RANDOM_SEED = 0  # every process must draw the *same* random weights, or vectors don't compare


class TorchEmbedder:
    """Encodes PIL images and texts with one OpenCLIP model. Use :func:`indexer.embedding.get_embedder`.

    ``model``, ``tokenizer``, ``transform`` and ``preprocess_cfg`` are open_clip's own objects,
    public for the ONNX exporter."""

    runtime = TORCH

    def __init__(self, spec: ModelSpec):
        from indexer.torch_compat import ensure_torchvision_importable

        ensure_torchvision_importable()
        import open_clip
        import torch

        self.spec = spec
        if spec.config_dir:
            open_clip.add_model_config(spec.config_dir)
        if spec.model not in open_clip.list_models():
            raise ModelLoadError(
                f"Unknown CLIP_MODEL {spec.model!r}. Choose one of open_clip's architectures "
                f"(e.g. {DEFAULT_MODEL}) or register its config with CLIP_MODEL_CONFIG_DIR."
            )
        self.weights_id = _checked_weights_id(spec, open_clip)
        self.device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs = {"device": self.device}
        if spec.cache_dir:
            kwargs["cache_dir"] = spec.cache_dir
        try:
            if spec.is_random:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(_RANDOM_SEED)
                    model, _, transform = open_clip.create_model_and_transforms(spec.model, pretrained=None, **kwargs)
            else:
                model, _, transform = open_clip.create_model_and_transforms(
                    spec.model, pretrained=_weights_source(spec, open_clip), **kwargs
                )
        except ModelLoadError:
            raise
        except Exception as exc:  # network, corrupt file, wrong architecture for the file...
            raise ModelLoadError(
                f"Could not load CLIP weights {spec.pretrained!r} for {spec.model}: {exc}. "
                "Set CLIP_PRETRAINED to a local checkpoint file (or to an open_clip tag on a "
                "machine that can download it) and CLIP_MODEL to its architecture; "
                "CLIP_PRETRAINED=random gives random weights for demos and tests."
            ) from exc
        model.eval()
        self.model = model
        self.transform = transform  # PIL image -> CHW float tensor
        self.preprocess_cfg = dict(model.visual.preprocess_cfg)
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        self.dim = int(model.visual.output_dim)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._torch = torch
        self._lock = threading.Lock()  # one forward pass at a time; torch already uses every core

    @property
    def model_id(self) -> str:
        return f"{self.spec.model}/{self.weights_id}"

    @property
    def is_random(self) -> bool:
        return self.spec.is_random

    def preprocess(self, image: PILImage) -> np.ndarray:
        return self.transform(image).numpy()

    def encode_images(self, images: Sequence[PILImage]) -> np.ndarray:
        if not images:
            return empty(self.dim)
        return self.encode_image_batch(np.stack([self.preprocess(image) for image in images]))

    def encode_image_batch(self, batch: np.ndarray) -> np.ndarray:
        """Encode already-preprocessed images (N x C x H x W)."""
        tensor = self._torch.as_tensor(batch)
        with self._lock, self._torch.inference_mode():
            features = self.model.encode_image(tensor.to(self.device))
        return normalise(features.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return empty(self.dim)
        tokens = self.tokenizer(list(texts))
        with self._lock, self._torch.inference_mode():
            features = self.model.encode_text(tokens.to(self.device))
        return normalise(features.float().cpu().numpy())


def _checked_weights_id(spec: ModelSpec, open_clip) -> str:
    """:func:`weights_id`, and an open_clip tag must be one of the model's."""
    if not spec.is_random and not spec.is_checkpoint_file:
        tags = open_clip.list_pretrained_tags_by_model(spec.model)
        if spec.pretrained not in tags:
            raise ModelLoadError(
                f"CLIP_PRETRAINED={spec.pretrained!r} is neither a file nor one of open_clip's "
                f"tags for CLIP_MODEL={spec.model} ({', '.join(tags) or 'none'})."
            )
    return weights_id(spec)


def _weights_source(spec: ModelSpec, open_clip) -> str:
    """A checkpoint path, or a tag open_clip will download.

    The hub client retries an unreachable host for about a minute per file, so a tag is
    only handed to open_clip after the weights were found in the local cache (then its
    path is used) or the download host answered a connection.
    """
    if spec.is_checkpoint_file:
        return str(Path(spec.pretrained).expanduser())
    cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    cached = _cached_hub_file(cfg.get("hf_hub", ""), spec.cache_dir or None)
    if cached:
        return cached
    url = cfg.get("url") if not cfg.get("hf_hub") else os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlsplit(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as exc:
        raise ModelLoadError(
            f"CLIP_PRETRAINED={spec.pretrained!r} must be downloaded from {host}, which cannot "
            f"be reached ({exc}). Set CLIP_PRETRAINED to a local checkpoint file of a "
            f"{spec.model} model, or CLIP_PRETRAINED=random for demos and tests."
        ) from None
    return spec.pretrained


def _cached_hub_file(hub: str, cache_dir: str | None) -> str | None:
    """Path of weights open_clip already downloaded for an ``org/repo/[file]`` hub entry."""
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(hub)
    names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    for name in names:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None

"""OpenCLIP embeddings: one model per process, loaded lazily on first use.

torch and open_clip are imported inside the loader, so importing this module (and starting
Django, or parsing the Airflow DAG) stays fast. Every vector that leaves this module is an
L2-normalised float32 numpy row.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL.Image import Image as PILImage

logger = logging.getLogger(__name__)

# ViT-B-32 trained on LAION-2B: 66.6% ImageNet zero-shot, 512-d vectors, ~80 ms per image on
# two CPU cores. The best quality a CPU-only gallery can embed at interactive speed.
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RANDOM = "random"
_RANDOM_SEED = 0  # every process must draw the *same* random weights, or vectors don't compare


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
    runtime: str = "torch"  # or "onnx" / "onnx-int8" (indexer.onnx_runtime)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ModelSpec:
        return cls(
            model=environ.get("CLIP_MODEL") or DEFAULT_MODEL,
            pretrained=environ.get("CLIP_PRETRAINED") or DEFAULT_PRETRAINED,
            device=environ.get("CLIP_DEVICE", ""),
            config_dir=environ.get("CLIP_MODEL_CONFIG_DIR", ""),
            cache_dir=environ.get("CLIP_CACHE_DIR", ""),
            runtime=environ.get("CLIP_RUNTIME") or "torch",
        )

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

    def as_torch(self) -> ModelSpec:
        return replace(self, runtime="torch")


class ClipEmbedder:
    """Encodes PIL images and texts with one OpenCLIP model. Use :func:`get_embedder`."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._load()

    def _load(self) -> None:
        from indexer.torch_compat import ensure_torchvision_importable

        ensure_torchvision_importable()
        import open_clip
        import torch

        spec = self.spec
        if spec.config_dir:
            open_clip.add_model_config(spec.config_dir)
        if spec.model not in open_clip.list_models():
            raise ModelLoadError(
                f"Unknown CLIP_MODEL {spec.model!r}. Choose one of open_clip's architectures "
                f"(e.g. {DEFAULT_MODEL}) or register its config with CLIP_MODEL_CONFIG_DIR."
            )
        self.device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.weights_id = weights_id(spec)
        kwargs = {"device": self.device}
        if spec.cache_dir:
            kwargs["cache_dir"] = spec.cache_dir
        try:
            if spec.is_random:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(_RANDOM_SEED)
                    model, _, preprocess = open_clip.create_model_and_transforms(
                        spec.model, pretrained=None, **kwargs
                    )
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.model, pretrained=self._weights_source(open_clip), **kwargs
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
        self._model = model
        self.preprocess = preprocess  # PIL image -> CHW float tensor, for batch pipelines
        self._tokenizer = open_clip.get_tokenizer(spec.model)
        self.dim = int(model.visual.output_dim)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._torch = torch
        self._lock = threading.Lock()  # one forward pass at a time; torch already uses every core

    def _weights_source(self, open_clip) -> str:
        """A checkpoint path, or a tag open_clip will download.

        The hub client retries an unreachable host for about a minute per file, so a tag is
        only handed to open_clip after the weights were found in the local cache (then its
        path is used) or the download host answered a connection.
        """
        spec = self.spec
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

    @property
    def model_id(self) -> str:
        """Names the vector space: vectors (and indexes) with different ids don't compare."""
        return f"{self.spec.model}/{self.weights_id}"

    @property
    def is_random(self) -> bool:
        return self.spec.is_random

    def encode_images(self, images: Sequence[PILImage]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self._torch.stack([self.preprocess(image) for image in images])
        return self.encode_image_batch(batch)

    def encode_image_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Encode already-preprocessed images (N x C x H x W)."""
        with self._lock, self._torch.inference_mode():
            features = self._model.encode_image(batch.to(self.device))
        return _normalised(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self._tokenizer(list(texts))
        with self._lock, self._torch.inference_mode():
            features = self._model.encode_text(tokens.to(self.device))
        return _normalised(features)


def weights_id(spec: ModelSpec) -> str:
    """What the vectors' model id says about the weights; fails fast with a clear message."""
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
    from indexer.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(spec.model)
    if spec.pretrained not in tags:
        raise ModelLoadError(
            f"CLIP_PRETRAINED={spec.pretrained!r} is neither a file nor one of open_clip's "
            f"tags for CLIP_MODEL={spec.model} ({', '.join(tags) or 'none'})."
        )
    return spec.pretrained


def _normalised(features: torch.Tensor) -> np.ndarray:
    return _normalised_array(features.float().cpu().numpy())


def _normalised_array(array: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first MiB: tells checkpoints apart without reading GBs."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


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


_embedders: dict[ModelSpec, ClipEmbedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(spec: ModelSpec, *, fallback_to_random: bool = False, onnx_dir=None) -> ClipEmbedder:
    """The process-wide embedder for ``spec``, loaded on first call.

    With ``fallback_to_random`` a model whose weights cannot be loaded is replaced by the
    same architecture with (deterministic) random weights, and a warning is logged.
    For the ONNX runtimes, ``onnx_dir`` is a callable giving the export's local folder.
    """
    with _embedders_lock:
        if spec not in _embedders and spec.runtime != "torch":
            from indexer.onnx_runtime import RUNTIMES, OnnxEmbedder

            if spec.runtime not in RUNTIMES or onnx_dir is None:
                raise ModelLoadError(f"CLIP_RUNTIME={spec.runtime!r}: use torch, onnx or onnx-int8.")
            if spec.config_dir:
                from indexer.torch_compat import ensure_torchvision_importable

                ensure_torchvision_importable()
                import open_clip

                open_clip.add_model_config(spec.config_dir)
            source = f"{spec.model}/{weights_id(spec)}"
            _embedders[spec] = OnnxEmbedder(spec, onnx_dir(), expected_source=source)
        if spec not in _embedders:
            try:
                _embedders[spec] = ClipEmbedder(spec)
            except ModelLoadError as exc:
                if not fallback_to_random or spec.is_random:
                    raise
                logger.warning("%s Falling back to random weights.", exc)
                random_spec = spec.as_random()
                if random_spec not in _embedders:
                    _embedders[random_spec] = ClipEmbedder(random_spec)
                _embedders[spec] = _embedders[random_spec]
        return _embedders[spec]


def clear_embedders() -> None:
    with _embedders_lock:
        _embedders.clear()

"""open_clip's inference transform with Pillow and numpy, for processes without torch.

The same steps in the same order as ``open_clip.image_transform_v2(cfg, is_train=False)``:
resize (Pillow's own resampling, which torchvision also calls for PIL images), centre crop with
torchvision's rounding, RGB, scale to [0, 1] and normalise in float32. tests/test_torch_free.py
checks the output against open_clip's to the last value on the sample photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexer.embedding.base import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

# The OpenAI CLIP statistics, open_clip's defaults when a config names none.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessConfig:
    """open_clip's ``PreprocessCfg`` as written in an export's manifest."""

    size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_dict(cls, cfg: dict) -> PreprocessConfig:
        size = cfg.get("size", 224)
        if isinstance(size, (list, tuple)):
            if size[0] != size[1]:
                raise ModelLoadError(f"Torch-free preprocessing handles square inputs only, not {size}; use CLIP_RUNTIME=torch.")
            size = size[0]
        mode = cfg.get("resize_mode") or "shortest"
        if mode not in ("shortest", "squash"):
            raise ModelLoadError(f"Torch-free preprocessing does not handle resize_mode={mode!r}; use CLIP_RUNTIME=torch.")
        return cls(
            size=int(size),
            mean=_triple(cfg.get("mean") or OPENAI_MEAN),
            std=_triple(cfg.get("std") or OPENAI_STD),
            # open_clip maps anything but "bilinear" (including "random") to bicubic at inference
            interpolation="bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic",
            resize_mode=mode,
        )


class Preprocessor:
    """PIL image -> CHW float32 array, as open_clip's eval transform gives it."""

    def __init__(self, config: PreprocessConfig):
        from PIL import Image

        self.config = config
        self._resample = Image.Resampling.BILINEAR if config.interpolation == "bilinear" else Image.Resampling.BICUBIC
        # torchvision's Normalize keeps mean and std as float32 tensors: the same rounding here.
        self._mean = np.asarray(config.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(config.std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, image: PILImage) -> np.ndarray:
        return self.to_array(self.crop(image))

    def crop(self, image: PILImage) -> PILImage:
        """Resized and centre-cropped to the model's input, in RGB."""
        size = self.config.size
        if self.config.resize_mode == "squash":
            image = _resize(image, (size, size), self._resample)
        else:
            image = _resize(image, _shortest_edge_size(image.size, size), self._resample)
            image = _center_crop(image, size)
        return image if image.mode == "RGB" else image.convert("RGB")

    def to_array(self, crop: PILImage) -> np.ndarray:
        pixels = np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1)
        # ToTensor divides by 255 in float32, Normalize subtracts then divides: keep that order.
        scaled = pixels.astype(np.float32) / np.float32(255)
        return (scaled - self._mean) / self._std


def _shortest_edge_size(size: tuple[int, int], target: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` output (w, h): the short edge becomes ``target``, the long
    edge is truncated, not rounded."""
    width, height = size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = target, int(target * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _resize(image: PILImage, size: tuple[int, int], resample) -> PILImage:
    if image.size == size:  # torchvision returns the image untouched then
        return image
    return image.resize(size, resample)


def _center_crop(image: PILImage, size: int) -> PILImage:
    width, height = image.size
    if width < size or height < size:  # cannot happen after a shortest-edge resize
        raise ValueError(f"image {image.size} is smaller than the crop {size}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _triple(values) -> tuple[float, float, float]:
    values = tuple(float(v) for v in (values if isinstance(values, (list, tuple)) else (values,) * 3))
    return values  # type: ignore[return-value]

"""Perceptual hashes: bits that stay nearly the same when a photo is resized, re-compressed,
slightly cropped or colour-shifted (DCT pHashes, as ``imagehash`` computes them). Taken once per upload from
the picture already decoded for the thumbnail; ``gallery.indexing.duplicates`` compares them.

Each upload gets three:

- ``phash``: 64 bits of the whole frame (8x8 low frequencies of a 32x32 grey picture). The only
  hash of rows uploaded before the others existed, so it stays the fallback.
- ``phash256``: 256 bits of the whole frame (16x16 low frequencies of 64x64). Four times the
  bits put a wider gap between copies and different photos: on the generated sets of
  docs/performance.md ("Near-duplicates") different photos come no closer than 78 of 256 bits,
  while with 64 bits two different faces are 10 apart, closer than many cropped copies.
- ``phash256_centre``: the same of the middle 90% of the picture (5% off each side). A copy
  cropped by about 5% a side shows the content that the original's middle shows, so comparing
  one image's centre hash with the other's whole-frame hash undoes the crop, which the
  whole-frame hash alone reads as a shift and a 10% zoom (10-26 of 64 bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

CENTRE = 0.9  # the share of width and height that the centre hash reads


@dataclass(frozen=True)
class PerceptualHashes:
    """An image's hashes as hex digits; ``None`` where a row predates that hash."""

    phash: str | None = None
    phash256: str | None = None
    phash256_centre: str | None = None


def perceptual_hashes(picture: Image.Image) -> PerceptualHashes:
    """All three hashes of a decoded picture (2-3 ms for a 512-pixel thumbnail, docs/performance.md)."""
    grey = picture.convert("L")
    return PerceptualHashes(
        phash=phash(grey, hash_size=8),
        phash256=phash(grey, hash_size=16),
        phash256_centre=phash(centre(grey), hash_size=16),
    )


def phash(picture: Image.Image, *, hash_size: int) -> str:
    """The DCT pHash of ``imagehash.phash`` (hackerfactor's "Looks Like It"), bit for bit: the
    picture in grey at 4 x ``hash_size`` pixels a side, its 2-D DCT-II, and one bit per
    low-frequency coefficient above their median, as hex digits. Written with numpy here
    because imagehash brings scipy, a third of the slim web tier's size, for two matrix products."""
    size = hash_size * 4
    pixels = np.asarray(picture.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    basis = _dct_basis(size)[:hash_size]
    low = basis @ pixels @ basis.T  # the low frequencies of the DCT along both axes (scale left out)
    bits = "".join("1" if bit else "0" for bit in (low > np.median(low)).flatten())
    return f"{int(bits, 2):0{hash_size * hash_size // 4}x}"


@lru_cache(maxsize=4)
def _dct_basis(size: int) -> np.ndarray:
    """Rows k of the DCT-II: cos(pi k (2n + 1) / 2N)."""
    k, n = np.ogrid[:size, :size]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * size))


def centre(picture: Image.Image, share: float = CENTRE) -> Image.Image:
    """The middle ``share`` of the picture's width and height."""
    w, h = picture.size
    dx, dy = round(w * (1 - share) / 2), round(h * (1 - share) / 2)
    return picture.crop((dx, dy, w - dx, h - dy))


def hash_distance(a: str | None, b: str | None) -> int | None:
    """How many bits of two hashes of one kind differ, or ``None`` when either is missing."""
    if not a or not b:
        return None
    return (int(a, 16) ^ int(b, 16)).bit_count()


def crop_tolerant_distance(a: PerceptualHashes, b: PerceptualHashes) -> int | None:
    """Bits (of 256) between two images, the smaller of whole frame against whole frame and
    either image's centre against the other's whole frame (one of them may be a crop of the
    other); ``None`` when either image lacks the 256-bit hashes."""
    if not (a.phash256 and a.phash256_centre and b.phash256 and b.phash256_centre):
        return None
    return min(
        hash_distance(a.phash256, b.phash256),
        hash_distance(a.phash256_centre, b.phash256),
        hash_distance(a.phash256, b.phash256_centre),
    )

"""Perceptual hashes: 64 bits that stay nearly the same when a photo is resized, re-compressed,
slightly cropped or colour-shifted (a DCT pHash from ``imagehash``). Taken once per upload from
the picture already decoded for the thumbnail; ``gallery.duplicates`` compares them."""

from __future__ import annotations

from PIL import Image


def perceptual_hash(picture: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of a decoded picture, as 16 hex digits."""
    import imagehash  # scipy underneath: loaded on the first upload, not when Django starts

    return str(imagehash.phash(picture))


def hash_distance(a: str | None, b: str | None) -> int | None:
    """How many of the 64 bits differ, or ``None`` when either image has no hash."""
    if not a or not b:
        return None
    return (int(a, 16) ^ int(b, 16)).bit_count()

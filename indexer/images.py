"""Decoding uploads with Pillow: validation, EXIF orientation, RGB, thumbnails."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

# Formats a browser can show, or that cameras and scanners write.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
# File names worth trying when importing a folder.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
THUMBNAIL_SIZE = 512  # longest side, enough for a 2x-density grid cell
THUMBNAIL_QUALITY = 85


class ImageRejected(ValueError):
    """The file is not an image we accept. The message is safe to show to the uploader."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    extension: str
    width: int  # as displayed, after EXIF orientation
    height: int


# Formats that must be decoded whole (no reduced-scale decoding): their pixel limit bounds the
# memory of one upload (RGBA: 4 bytes a pixel, so 30 MP is at most 120 MB).
FULL_DECODE_FORMATS = {"PNG", "WEBP", "GIF", "BMP", "TIFF"}
# Bytes a pixel of a decoded Pillow image takes, by mode (every other mode: 4).
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# How many decoded images' worth a format's decoder holds at its peak, with Pillow 13: libwebp
# decodes into buffers of its own that Pillow then copies (measured: 3.8 for a 30 MP WebP);
# libtiff's RGBA path (JPEG-in-TIFF, YCbCr) can hold a whole-image strip beside the image, and
# GIF frames a second copy: 2 assumed for those (deflate and LZW TIFFs measured 1.1).
DECODER_COPIES = {"WEBP": 4, "TIFF": 2, "GIF": 2}
# A JPEG decodes at 1/2, 1/4 or 1/8 scale down to about this many pixels (or to the size the
# caller needs, if larger): a 65500x1000 strip decodes at 1/8, not whole.
DRAFT_TARGET_PIXELS = 4_000_000
# What the decoded image is reduced to before anything else touches it, at most (the thumbnail
# and the model need far less); work on the full image goes in strips of about this many bytes.
REDUCED_MAX_PIXELS = 4_000_000
STRIP_BYTES = 1024 * 1024
# Memory one decode uses beyond its budget, at most: the reduced copy (REDUCED_MAX_PIXELS of
# RGB, 16 MB), a strip in three modes, the thumbnail. README states budget + this as the bound.
WORKING_BYTES = 24 * 1024 * 1024


def decode_budget(max_full_decode_pixels: int) -> int:
    """The most bytes decoding one image may take: what a full decode of the largest allowed
    RGBA image takes (UPLOAD_MAX_FULL_DECODE_PIXELS x 4 bytes: 120 MB at 30 MP)."""
    return max_full_decode_pixels * 4


def inspect_image(data: bytes, *, max_pixels: int, max_full_decode_pixels: int | None = None) -> ImageInfo:
    """Check that ``data`` is a complete image of an allowed format and size, without keeping it."""
    return prepare_image(data, max_pixels=max_pixels, max_full_decode_pixels=max_full_decode_pixels)[0]


def prepare_image(
    data: bytes, *, max_pixels: int, max_full_decode_pixels: int | None = None, thumbnail_size: int = THUMBNAIL_SIZE
) -> tuple[ImageInfo, Image.Image]:
    """Validate ``data`` and decode it once, small, within a memory budget
    (:func:`decode_budget`): JPEGs decode at a reduced scale (a 100 MP photo costs a few MB);
    other formats decode whole, and are refused when that would cost more than the budget.
    Everything after the decode (alpha, mode conversion, EXIF rotation) works on a reduced copy
    made in strips. Returns the info and an upright RGB image at least ``thumbnail_size`` on its
    shorter side (or the whole image when smaller; extreme strips get shorter)."""
    if not data:
        raise ImageRejected("The file is empty.")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
            if fmt not in ALLOWED_FORMATS:
                allowed = ", ".join(sorted(ALLOWED_FORMATS))
                raise ImageRejected(f"{fmt} images are not supported; use one of {allowed}.")
            limit = max_pixels
            if fmt in FULL_DECODE_FORMATS and max_full_decode_pixels:
                limit = min(max_pixels, max_full_decode_pixels)
            _check_pixels(width, height, limit, fmt)
            probe.verify()  # structure and checksums, without decoding pixels
        image = _decode(data, thumbnail_size, budget=decode_budget(max_full_decode_pixels) if max_full_decode_pixels else None)
        orientation = image.getexif().get(0x0112, 1)
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected(f"The image has too many pixels (more than {max_pixels:,}).") from None
    except UnidentifiedImageError:
        raise ImageRejected("The file is not an image (or is in a format we cannot read).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"The image is damaged or truncated ({exc}).") from None
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    image = _upright(_reduce_to_rgb(image, thumbnail_size), orientation)
    return ImageInfo(format=fmt, extension=ALLOWED_FORMATS[fmt], width=width, height=height), image


def open_rgb(source: bytes | BinaryIO, *, min_size: int | None = None) -> Image.Image:
    """Decode to an upright RGB image. ``min_size`` lets JPEG decode at a reduced scale (much
    faster for large photos) and the result be reduced, keeping both sides at least that long
    (extreme strips get shorter). Stored originals passed :func:`prepare_image` already."""
    data = source if isinstance(source, bytes) else source.read()
    image = _decode(data, min_size, budget=None)
    orientation = image.getexif().get(0x0112, 1)
    if min_size:
        image = _reduce_to_rgb(image, min_size)
    return _upright(_to_rgb(image) if image.mode != "RGB" else image, orientation)


def decode_cost(image: Image.Image, original_size: tuple[int, int] | None = None) -> int:
    """Bytes that loading ``image`` (opened, drafted, not loaded) takes at its peak: the decoded
    pixels times the decoder's copies, plus a progressive JPEG's coefficients, which libjpeg
    holds for the whole image whatever the scale (2 bytes each, per component and its sampling)."""
    width, height = image.size
    cost = width * height * MODE_BYTES.get(image.mode, 4) * DECODER_COPIES.get(image.format, 1)
    if image.format == "JPEG" and image.info.get("progressive"):
        full_width, full_height = original_size or image.size
        layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * len(image.getbands())
        h_max, v_max = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
        shares = sum(layer[1] * layer[2] / (h_max * v_max) for layer in layers)
        cost += int(full_width * full_height * 2 * shares)
    return cost


def _decode(data: bytes, min_size: int | None, *, budget: int | None) -> Image.Image:
    """Open and load ``data``: JPEGs at the reduced scale :func:`_draft_scale` picks; refused
    (:class:`ImageRejected`) when loading would cost more than ``budget`` bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        original_size = image.size
        if image.format == "JPEG" and min_size:
            scale = _draft_scale(*image.size, min_size)
            if scale > 1:
                image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
        if budget is not None and (cost := decode_cost(image, original_size)) > budget:
            width, height = original_size
            kind = f"{'progressive ' if image.info.get('progressive') else ''}{image.format} image in mode {image.mode}"
            raise ImageRejected(
                f"The image is too large to decode safely ({width}x{height}, a {kind} needs about "
                f"{cost / 1e6:.0f} MB; the limit is {budget / 1e6:.0f} MB). Save it smaller or as a baseline JPEG."
            )
        # verify() misses truncated pixel data; decoding reads every byte and catches it.
        image.load()
    return image


def _draft_scale(width: int, height: int, min_size: int) -> int:
    """1, 2, 4 or 8: as much reduction as keeps the shorter side at least ``min_size``, and at
    least enough to bring the image near DRAFT_TARGET_PIXELS (libjpeg scales by these only)."""
    scale = 1
    while scale < 8 and width * height > DRAFT_TARGET_PIXELS * scale * scale:
        scale *= 2
    while scale < 8 and min(width, height) // (scale * 2) >= min_size:
        scale *= 2
    return scale


def _reduce_to_rgb(image: Image.Image, min_size: int) -> Image.Image:
    """An RGB copy reduced by a whole factor: as far as keeps the shorter side at least twice
    ``min_size`` (the model's or the thumbnail's own resize stays as sharp, at a fraction of
    its cost), and at least to REDUCED_MAX_PIXELS. Converted (transparency onto white) and
    reduced in strips, so no full-size copy of any mode is ever made: the decoded image is the
    only large one."""
    width, height = image.size
    factor = max(1, min(width, height) // (2 * min_size))
    while (width // factor) * (height // factor) > REDUCED_MAX_PIXELS:
        factor += 1
    if factor == 1:
        return _to_rgb(image)  # small enough: one copy of a small image
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = max(factor, STRIP_BYTES // (4 * width) // factor * factor)  # whole blocks of `factor` rows
    for top in range(0, height, rows):
        strip = _to_rgb(image.crop((0, top, width, min(top + rows, height))))
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation to the (already small) image."""
    if orientation in range(2, 9):
        method = {
            2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90,
        }[orientation]
        image = image.transpose(method)
    return image


def make_thumbnail(image: Image.Image, *, size: int = THUMBNAIL_SIZE, in_place: bool = False) -> bytes:
    """A JPEG of at most ``size`` px a side; ``in_place`` shrinks ``image`` itself (no copy)."""
    thumb = image if in_place else image.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True, progressive=True)
    return out.getvalue()


def _check_pixels(width: int, height: int, max_pixels: int, fmt: str = "") -> None:
    if width * height > max_pixels:
        kind = f" for a {fmt} image" if fmt and fmt in FULL_DECODE_FORMATS else ""
        raise ImageRejected(
            f"The image has too many pixels ({width}x{height}); the limit{kind} is {max_pixels:,}."
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, as they appear on the gallery's light background.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


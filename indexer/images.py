"""Decoding uploads with Pillow: validation, EXIF orientation, RGB, thumbnails."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

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


def inspect_image(data: bytes, *, max_pixels: int, max_full_decode_pixels: int | None = None) -> ImageInfo:
    """Check that ``data`` is a complete image of an allowed format and size, without keeping it."""
    return prepare_image(data, max_pixels=max_pixels, max_full_decode_pixels=max_full_decode_pixels)[0]


def prepare_image(
    data: bytes, *, max_pixels: int, max_full_decode_pixels: int | None = None, thumbnail_size: int = THUMBNAIL_SIZE
) -> tuple[ImageInfo, Image.Image]:
    """Validate ``data`` and decode it once, small: JPEGs decode at a reduced scale no smaller
    than ``thumbnail_size`` (a 100 MP photo costs a few MB); other formats decode whole, which
    is why they have their own, lower pixel limit. Returns the info and an upright RGB image
    at least ``thumbnail_size`` on its shorter side (or the whole image when smaller)."""
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if fmt == "JPEG":
                image.draft("RGB", (thumbnail_size, thumbnail_size))
            # verify() misses truncated pixel data; decoding reads every byte and catches it.
            image.load()
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
    if orientation in range(2, 9):
        image = ImageOps.exif_transpose(image)  # without a tag to apply, it would copy the whole image
    # Shrink before converting: only the decoded image is ever full size (an RGBA copy of a
    # 30 MP PNG is another 120 MB).
    image = _to_rgb(_shrink(image, thumbnail_size))
    return ImageInfo(format=fmt, extension=ALLOWED_FORMATS[fmt], width=width, height=height), image


def open_rgb(source: bytes | BinaryIO, *, min_size: int | None = None) -> Image.Image:
    """Decode to an upright RGB image. ``min_size`` lets JPEG decode at a reduced scale (much
    faster for large photos) while keeping both sides at least that long."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(stream)
        if min_size and image.format == "JPEG":
            image.draft("RGB", (min_size, min_size))
        image.load()
    if min_size:
        image = _shrink(image, min_size)
    image = ImageOps.exif_transpose(image)
    return _to_rgb(image)


def _shrink(image: Image.Image, min_size: int) -> Image.Image:
    """A box-filter reduction down to at least twice ``min_size`` on the shorter side: the
    model's (or the thumbnail's) own resize stays as sharp, at a fraction of its cost (PNG and
    friends cannot decode at reduced scale)."""
    factor = min(image.size) // (2 * min_size)
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE_MODES:  # palette and 1-bit images (GIFs, many PNGs)
        image = _to_rgb(image)
    if image.mode not in ("RGBA", "LA"):
        return image.reduce(factor)
    # Pillow reduces transparent images through a premultiplied copy of the whole image; in
    # strips (whole blocks of ``factor`` rows) that copy stays a few MB.
    width, height = image.size
    reduced = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    rows = factor * 64
    for top in range(0, height, rows):
        reduced.paste(image.crop((0, top, width, min(top + rows, height))).reduce(factor), (0, top // factor))
    return reduced


_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "RGBa", "La", "I", "F", "CMYK", "YCbCr", "PA"}


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
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, as they appear on the gallery's light background.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


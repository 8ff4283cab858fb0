"""Decoding uploads with Pillow: validation, EXIF orientation, RGB, thumbnails."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

# Formats a browser can show, or that cameras and scanners write.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
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


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Check that ``data`` is a complete image of an allowed format and size, without keeping it."""
    if not data:
        raise ImageRejected("The file is empty.")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
            if fmt not in ALLOWED_FORMATS:
                allowed = ", ".join(sorted(ALLOWED_FORMATS))
                raise ImageRejected(f"{fmt} images are not supported; use one of {allowed}.")
            _check_pixels(width, height, max_pixels)
            probe.verify()  # structure and checksums, without decoding pixels
        with Image.open(io.BytesIO(data)) as image:
            # verify() misses truncated pixel data; a full decode catches it.
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
    return ImageInfo(format=fmt, extension=ALLOWED_FORMATS[fmt], width=width, height=height)


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
    if min_size and (factor := min(image.size) // (2 * min_size)) >= 2:
        # A box-filter reduction down to at least twice the target keeps the model's own resize
        # as sharp, at a fraction of its cost (PNG and friends cannot decode at reduced scale).
        image = image.reduce(factor)
    image = ImageOps.exif_transpose(image)
    return _to_rgb(image)


def make_thumbnail(image: Image.Image, *, size: int = THUMBNAIL_SIZE) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True, progressive=True)
    return out.getvalue()


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(
            f"The image has too many pixels ({width}x{height}); the limit is {max_pixels:,}."
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


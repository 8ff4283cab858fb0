"""indexer.images: validation, EXIF orientation, RGB conversion, thumbnails."""

import io

import pytest
from PIL import Image

from indexer.images import ImageRejected, inspect_image, make_thumbnail, open_rgb
from tests.images import image_bytes

LIMIT = 10_000_000


def test_inspect_reports_format_and_upright_size():
    info = inspect_image(image_bytes(1, size=(120, 80), fmt="PNG"), max_pixels=LIMIT)
    assert (info.format, info.extension, info.width, info.height) == ("PNG", "png", 120, 80)


def test_exif_rotation_is_applied():
    data = image_bytes(2, size=(120, 80), exif_orientation=6)  # stored landscape, shown portrait
    info = inspect_image(data, max_pixels=LIMIT)
    assert (info.width, info.height) == (80, 120)
    assert open_rgb(data).size == (80, 120)


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "empty"),
        (b"%PDF-1.4 definitely not a picture", "not an image"),
        (image_bytes(3)[:300], "damaged or truncated"),
        (image_bytes(4, fmt="ICO"), "ICO images are not supported"),
    ],
    ids=["empty", "not-an-image", "truncated", "unsupported-format"],
)
def test_bad_files_are_rejected_with_a_reason(data, says):
    with pytest.raises(ImageRejected, match=says):
        inspect_image(data, max_pixels=LIMIT)


def test_too_many_pixels_is_rejected_before_decoding():
    data = image_bytes(5, size=(2000, 1000), fmt="PNG")
    with pytest.raises(ImageRejected, match="too many pixels"):
        inspect_image(data, max_pixels=1_000_000)


def test_transparent_images_become_rgb_on_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    image = open_rgb(out.getvalue())
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 255, 255)


def test_grayscale_becomes_rgb():
    assert open_rgb(image_bytes(6, mode="L", fmt="PNG")).mode == "RGB"


def test_large_jpegs_decode_at_reduced_scale_but_not_below_the_minimum():
    data = image_bytes(7, size=(2400, 1600))
    image = open_rgb(data, min_size=224)
    assert 224 <= min(image.size) < 1600


def test_thumbnail_is_a_small_jpeg_keeping_the_aspect_ratio():
    thumb = Image.open(io.BytesIO(make_thumbnail(open_rgb(image_bytes(8, size=(2000, 1000))))))
    assert thumb.format == "JPEG" and thumb.size == (512, 256)

"""Real image files, made with Pillow, for the tests."""

import io
import random

from PIL import Image, ImageDraw


def image_bytes(seed: int = 0, *, size=(96, 64), fmt="JPEG", mode="RGB", exif_orientation=None) -> bytes:
    """A distinct picture for each seed: a background with a few coloured shapes."""
    rng = random.Random(seed)
    colour = lambda: tuple(rng.randrange(256) for _ in range(3))  # noqa: E731
    w, h = size
    image = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        box = [x0, y0, x0 + rng.randrange(w // 4, w // 2 + 1), y0 + rng.randrange(h // 4, h // 2 + 1)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour())
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()

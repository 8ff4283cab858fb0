"""What decoding one upload may cost (issue #22, 3): each crafted file goes through the upload
service in a fresh process, and its peak memory (Linux's VmHWM, reset just before) stays under
the bound README states: the decode budget (UPLOAD_MAX_FULL_DECODE_PIXELS x 4 bytes) plus
``indexer.images.WORKING_BYTES``. Files that cannot be decoded within it are refused, and
nothing of them is stored."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from gallery.models import Image
from indexer.images import WORKING_BYTES, decode_budget
from tests.conftest import on_object_storage, stored_files
from tests.test_reliability import MEMORY_SCRIPT, ROOT, database_url

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc to reset the peak RSS"),
    pytest.mark.django_db(transaction=True),
]


def _drawn(mode, size, background, ink):
    picture = PILImage.new(mode, size, background)
    ImageDraw.Draw(picture).ellipse([0, 0, size[0] * 2 // 3, size[1] * 9 // 10], fill=ink)
    return picture


def _save(folder, name, picture, fmt, **options):
    path = folder / name
    picture.save(path, format=fmt, **options)
    return path


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """name -> (path, the expected outcome: stored as (width, height), or refused)."""
    folder = tmp_path_factory.mktemp("crafted")
    rotated = PILImage.Exif()
    rotated[0x0112] = 6  # shown turned by 90 degrees
    files = {}
    wide_rgb = _drawn("RGB", (65_500, 1_000), (10, 20, 30), (200, 0, 0))
    files["65500x1000 CMYK JPEG"] = (_save(folder, "cmyk.jpg", _drawn("CMYK", (65_500, 1_000), (10, 20, 30, 40), (200, 0, 0, 0)), "JPEG"), (65_500, 1_000))
    files["65500x1000 JPEG, EXIF-rotated"] = (_save(folder, "rotated.jpg", wide_rgb, "JPEG", exif=rotated), (1_000, 65_500))
    files["65500x1000 progressive JPEG"] = (_save(folder, "progressive.jpg", wide_rgb, "JPEG", progressive=True), None)
    del wide_rgb
    files["15000x2000 grey+alpha PNG"] = (_save(folder, "la.png", _drawn("LA", (15_000, 2_000), (100, 200), (10, 50)), "PNG"), (15_000, 2_000))
    files["15000x2000 RGBA PNG"] = (_save(folder, "rgba.png", _drawn("RGBA", (15_000, 2_000), (1, 2, 3, 4), (200, 0, 0, 90)), "PNG", compress_level=1), (15_000, 2_000))
    palette = _drawn("RGB", (15_000, 2_000), (10, 20, 30), (200, 0, 0)).convert("P")
    files["15000x2000 transparent palette PNG"] = (_save(folder, "palette.png", palette, "PNG", transparency=0), (15_000, 2_000))
    files["6000x5000 16-bit grey PNG"] = (_save(folder, "grey16.png", PILImage.new("I;16", (6_000, 5_000), 1_000), "PNG"), (6_000, 5_000))
    rgb = _drawn("RGB", (6_000, 5_000), (10, 20, 30), (200, 0, 0))
    files["6000x5000 PNG, EXIF-rotated"] = (_save(folder, "rotated.png", rgb, "PNG", exif=rotated, compress_level=1), (5_000, 6_000))
    files["6000x5000 WebP"] = (_save(folder, "big.webp", rgb, "WEBP", quality=50), None)
    del rgb
    files["6000x5000 float TIFF"] = (_save(folder, "float.tif", _drawn("F", (6_000, 5_000), 0.5, 2.0), "TIFF", compression="tiff_adobe_deflate"), None)
    files["3000x2000 float TIFF"] = (_save(folder, "small-float.tif", _drawn("F", (3_000, 2_000), 0.5, 2.0), "TIFF", compression="tiff_adobe_deflate"), (3_000, 2_000))
    return files


def test_each_crafted_file_stays_within_the_documented_bound_or_is_refused(crafted, settings):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    if on_object_storage():
        env["S3_PREFIX"] = settings.STORAGES["default"]["OPTIONS"]["location"]
    paths = [str(path) for path, _ in crafted.values()]
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *paths], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    growth = json.loads(done.stdout.strip().splitlines()[-1])
    bound = decode_budget(settings.UPLOAD_MAX_FULL_DECODE_PIXELS) + WORKING_BYTES
    report = {name: (growth[str(path)]["bytes"] / 2**20, growth[str(path)]["outcome"][:90]) for name, (path, _) in crafted.items()}
    for name, (path, expected) in crafted.items():
        measured = growth[str(path)]
        assert measured["bytes"] <= bound, f"{name}: {measured['bytes'] / 2**20:.0f} MiB > {bound / 2**20:.0f} MiB; all: {report}"
        if expected is None:
            assert measured["outcome"].startswith("rejected: The image is too large to decode safely"), (name, measured)
        else:
            assert measured["outcome"] == "stored", (name, measured)
    stored = sorted((image.width, image.height) for image in Image.objects.all())
    assert stored == sorted([(96, 64)] + [expected for _, expected in crafted.values() if expected])  # the warm-up, then these
    assert len(stored_files()) == 2 * len(stored)  # an original and a thumbnail each; nothing of the refused

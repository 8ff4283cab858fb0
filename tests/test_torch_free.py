"""The torch-free web tier: preprocessing and tokenizer identical to open_clip's, and a web
process on an ONNX runtime that answers searches without importing torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from PIL import Image

from gallery.catalogue.samples import available_samples
from indexer.embedding.preprocess import PreprocessConfig, Preprocessor
from indexer.embedding.tokenizer import ClipTokenizer, open_clip_vocab_file
from tests.conftest import on_object_storage
from tests.searching import by_text

ROOT = Path(__file__).resolve().parent.parent


def open_clip_module():
    from indexer.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import open_clip

    return open_clip


def sample_photos():
    photos = [Image.open(sample.path) for sample in available_samples()]
    assert len(photos) >= 15
    first = photos[0].convert("RGB")
    # odd shapes: portrait, already the model's size, tiny (upscaled), and a grey and an RGBA photo
    return photos + [first.resize((224, 500)), first.resize((224, 224)), first.resize((37, 91)), first.convert("L"), first.convert("RGBA")]


@pytest.mark.parametrize(
    "cfg",
    [
        {"size": 224},  # ViT-B-32 and most CLIP models: OpenAI statistics, bicubic, shortest edge
        {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear"},
        {"size": 96, "resize_mode": "squash"},
    ],
)
def test_preprocessing_matches_open_clip_to_the_last_value(cfg):
    """Bit for bit, not to a tolerance: the same float32 values from Pillow and numpy."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    open_clip_module()
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    ours = Preprocessor(PreprocessConfig.from_dict(cfg))
    for photo in sample_photos():
        expected = reference(photo).numpy()
        got = ours(photo)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), f"{photo.size} {photo.mode}: max diff {np.abs(got - expected).max()}"


def test_tokenizer_matches_open_clip_token_for_token():
    reference = open_clip_module().get_tokenizer("ViT-B-32")
    ours = ClipTokenizer(open_clip_vocab_file())
    texts = [
        "", "a cat", "A Photo of a DOG!!!", "  spaced\tout\n text  ", "café crème brûlée", "東京の夜景", "emoji 🐱🚲 party",
        "&amp;lt;b&amp;gt; entities &quot;quoted&quot;", "it's they're we've I'm you'll he'd", "numbers 12345 and 3.14159",
        "hyphen-ated words, semi;colons: and/or slashes", "long words " * 60, "ﬁ ligature and Ｆｕｌｌｗｉｄｔｈ",
        "mojibake Ã©tÃ©", "x" * 400, "<start_of_text> special <end_of_text>", "Zürich über Straße", "ÀÉÎÕÜ ñ ç",
        "مرحبا بالعالم", "Привет, мир", "tab\tand\u00a0nbsp", "😀" * 40,
    ]
    expected = reference(texts).numpy()
    got = ours(texts)
    assert got.dtype == np.int64 and got.shape == expected.shape == (len(texts), 77)
    for text, a, b in zip(texts, expected, got):
        assert a.tolist() == b.tolist(), text


@pytest.mark.django_db(transaction=True)
def test_web_tier_on_onnx_answers_searches_without_torch(settings, upload, tmp_path, stored_onnx_export):
    """A fresh web process (CLIP_RUNTIME=onnx, torch made unimportable) answers a text search
    through Django's test client with the same results as this process, and never imports torch."""
    from gallery.indexing import index_refresh

    settings.CLIP_RUNTIME = "onnx"
    for seed in range(6):
        upload(seed, title=f"Photo {seed}")
    assert index_refresh().published is not None
    expected = [hit.image.pk for hit in by_text("a green circle")]

    db = connection.settings_dict
    url = (
        f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        if connection.vendor == "postgresql" else f"sqlite:///{db['NAME']}"
    )
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url, "CLIP_RUNTIME": "onnx",
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT), "INDEX_CACHE_DIR": str(tmp_path / "web-cache"), "PYTHONPATH": str(ROOT),
    }
    if on_object_storage():
        env["S3_PREFIX"] = settings.STORAGES["default"]["OPTIONS"]["location"]
    done = subprocess.run([sys.executable, "-c", WEB_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == 200 and found["ids"] == expected
    assert found["heavy"] == []


# The slim install has no torch: a finder that refuses it makes any import of it fail loudly.
WEB_PROCESS = r"""
import json, sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
            raise ImportError(f"{name} is not installed in the slim web tier")

sys.meta_path.insert(0, NoTorch())
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
response = Client().get("/api/v1/search/", {"q": "a green circle"})
body = response.json() if response.status_code == 200 else {}
print(json.dumps({
    "status": response.status_code,
    "ids": [row["image"]["id"] for row in body.get("results", [])],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "open_clip")),
}))
"""


def test_slim_requirements_pin_what_the_full_install_pins():
    def pins(name):
        lines = (ROOT / name).read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))

    full, web = pins("requirements.txt"), pins("requirements-web.txt")
    for package, version in web.items():
        assert full.get(package, version) == version, package
    requirements = [line.split("#")[0].strip().lower() for line in (ROOT / "requirements-web.txt").read_text().splitlines()]
    assert not [r for r in requirements if r.startswith(("torch", "open-clip", "onnx=", "onnxscript", "apache-airflow"))]

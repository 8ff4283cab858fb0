"""The ONNX Runtime backend: export, load, agreement with torch, and switching runtimes."""

import io
import json
import shutil

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from gallery import indexing
from gallery.models import Image, IndexVersion
from indexer.embedding import ModelSpec, get_embedder
from indexer.images import open_rgb
from indexer.onnx_export import INT8_VARIANTS
from tests.conftest import CLIP_CONFIGS as CONFIGS
from tests.conftest import TINY
from tests.images import image_bytes
from tests.searching import by_image, by_text

pytestmark = pytest.mark.usefixtures("fresh_embedders")


@pytest.fixture
def exported(tiny_onnx_export):
    return tiny_onnx_export


def pictures(n):
    return [open_rgb(image_bytes(seed)) for seed in range(n)]


@pytest.mark.parametrize("runtime, tolerance", [("onnx", 1e-4), ("onnx-int8", 0.03)])
def test_onnx_embeddings_agree_with_torch(exported, runtime, tolerance):
    folder, _ = exported
    torch_model = get_embedder(TINY)
    onnx_model = get_embedder(TINY.with_runtime(runtime), onnx_files=folder)
    assert onnx_model.model_id == {"onnx": "tiny-test/random#onnx-fp32", "onnx-int8": "tiny-test/random#onnx-int8"}[runtime]
    images, texts = pictures(6), ["a red square", "a blue circle", "a cat"]
    for a, b in ((torch_model.encode_images(images), onnx_model.encode_images(images)),
                 (torch_model.encode_texts(texts), onnx_model.encode_texts(texts))):
        assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
        assert np.sum(a * b, axis=1).min() >= 1 - tolerance


def test_export_manifest(exported):
    folder, manifest = exported
    assert manifest["model_id"] == "tiny-test/random" and manifest["opset"] == 18
    assert manifest["precisions"] == ["fp32", "int8"]
    assert set(manifest["files"]) == {
        "image.onnx", "text.onnx", "image-int8.onnx", "text-int8.onnx", "bpe_simple_vocab_16e6.txt.gz", "reference.npz",
    }
    # every int8 variant was tried on each tower, and one per tower kept
    assert {(row["tower"], row["variant"]) for row in manifest["int8_variants"]} == {
        (tower, variant) for tower in ("image", "text") for variant in INT8_VARIANTS
    }
    assert sorted(row["tower"] for row in manifest["int8_variants"] if row["kept"]) == ["image", "text"]
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_a_changed_or_damaged_export_is_refused(exported, tmp_path):
    from indexer.embedding import ModelLoadError

    folder, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    other = ModelSpec(model="tiny-test", pretrained=str(tmp_path / "other.pt"), config_dir=CONFIGS, runtime="onnx")
    (tmp_path / "other.pt").write_bytes(b"weights of another training run")
    with pytest.raises(ModelLoadError, match="export_onnx"):
        get_embedder(other, onnx_files=copy)
    (copy / "text.onnx").write_bytes(b"damaged")
    with pytest.raises(ModelLoadError, match="checksum"):
        get_embedder(TINY.with_runtime("onnx"), onnx_files=copy).encode_texts(["a damaged tower loads on first use"])


@pytest.mark.django_db
def test_export_command_stores_files_next_to_the_indexes():
    out = io.StringIO()
    call_command("export_onnx", "--int8-variants", "dynamic,dynamic-per-channel", stdout=out)
    assert "| text | dynamic-per-channel |" in out.getvalue()
    prefix = "onnx/tiny-test-random"
    assert sorted(default_storage.listdir(prefix)[1]) == sorted([
        "image.onnx", "text.onnx", "image-int8.onnx", "text-int8.onnx", "manifest.json",
        "bpe_simple_vocab_16e6.txt.gz", "reference.npz",
    ])
    out = io.StringIO()
    call_command("verify_onnx", "--runtime", "onnx", stdout=out)
    assert "cosine mean 1.0000" in out.getvalue() and "Verdict: safe to switch" in out.getvalue()


@pytest.mark.django_db
def test_runtime_without_an_export_is_a_clear_error(indexed_gallery, settings):
    settings.CLIP_RUNTIME = "onnx-int8"
    with pytest.raises(CommandError, match="needs an ONNX export.*Run `manage.py export_onnx`"):
        call_command("search", "a cat")


@pytest.mark.django_db
def test_switching_runtime_reembeds_without_serving_mixed_vectors(indexed_gallery, settings, stored_onnx_export):
    torch_version = IndexVersion.objects.get(is_current=True)
    torch_top = [hit.image.pk for hit in by_text("a green circle")[:5]]
    settings.CLIP_RUNTIME = "onnx"

    # Queries already come from ONNX, against the torch index: the same results.
    assert [hit.image.pk for hit in by_text("a green circle")[:5]] == torch_top
    assert by_image(io.BytesIO(image_bytes(4)))[0].image.pk == indexed_gallery[4].pk

    # Half re-embedded: nothing is published, the torch index keeps serving.
    half = [image.pk for image in indexed_gallery[:10]]
    indexing.images_embed_pending(ids=half)
    assert indexing.index_publish() is None
    assert IndexVersion.objects.get(is_current=True) == torch_version

    report = indexing.index_refresh()
    assert report.embed.embedded == 10 and report.published.model == "tiny-test/random#onnx-fp32"
    assert report.published.item_count == 20
    assert set(Image.objects.values_list("embedding_model", flat=True)) == {"tiny-test/random#onnx-fp32"}
    assert [hit.image.pk for hit in by_text("a green circle")[:5]] == torch_top


@pytest.mark.django_db
def test_a_tower_damaged_in_storage_is_a_503_for_people_and_the_reason_for_operators(
    indexed_gallery, settings, stored_onnx_export, client
):
    """The text tower loads on first use, after the embedder itself: its failure is still the
    gallery's ModelUnavailable (a 503 saying the model could not be loaded), not a 500."""
    from django.core.files.base import ContentFile
    from rest_framework.test import APIClient

    from gallery.engine.onnx_models import storage_prefix

    name = f"{storage_prefix(TINY)}/text.onnx"
    default_storage.delete(name)
    default_storage.save(name, ContentFile(b"damaged"))
    settings.CLIP_RUNTIME = "onnx"
    api = APIClient().get("/api/v1/search/", {"q": "a cat"})
    page = client.get("/search/", {"q": "a cat"})
    assert api.status_code == 503 and "could not be loaded" in api.json()["detail"]
    assert page.status_code == 503 and "could not be loaded" in page.content.decode()
    assert "checksum" not in api.json()["detail"]  # the details are for the operator ...
    with pytest.raises(CommandError, match="does not match the checksum"):  # ... whom the command tells
        call_command("search", "a cat")

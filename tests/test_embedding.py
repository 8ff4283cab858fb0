"""indexer.embedding through the real OpenCLIP code path, with a tiny random-weight model."""

import io

import numpy as np
import pytest
from PIL import Image

from indexer.embedding import ModelLoadError, ModelSpec, clear_embedders, get_embedder
from tests.conftest import CLIP_CONFIGS as CONFIGS
from tests.conftest import TINY
from tests.images import image_bytes

pytestmark = pytest.mark.usefixtures("fresh_embedders")


def pictures(n):
    return [Image.open(io.BytesIO(image_bytes(seed))).convert("RGB") for seed in range(n)]


def test_encodes_images_and_texts_to_normalised_float32():
    embedder = get_embedder(TINY)
    images = embedder.encode_images(pictures(3))
    texts = embedder.encode_texts(["a red square", "a blue circle"])
    assert images.shape == (3, 32) and texts.shape == (2, 32)
    assert images.dtype == texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert embedder.model_id == "tiny-test/random"
    assert embedder.encode_images([]).shape == (0, 32)


def test_one_model_per_process():
    assert get_embedder(TINY) is get_embedder(TINY)


def test_random_weights_are_the_same_in_every_process():
    """Random weights are drawn from a fixed seed, so a web process and the indexer agree."""
    first = get_embedder(TINY).encode_texts(["a cat"])
    clear_embedders()
    again = get_embedder(TINY).encode_texts(["a cat"])
    np.testing.assert_array_equal(first, again)


def test_loads_a_local_checkpoint_file(tmp_path):
    import torch

    checkpoint = tmp_path / "tiny-weights.pt"
    torch.save(get_embedder(TINY).model.state_dict(), checkpoint)
    expected = get_embedder(TINY).encode_texts(["a dog"])
    from_file = get_embedder(ModelSpec(model="tiny-test", pretrained=str(checkpoint), config_dir=CONFIGS))
    assert from_file.model_id.startswith("tiny-test/tiny-weights.pt@")
    np.testing.assert_allclose(from_file.encode_texts(["a dog"]), expected, atol=1e-5)


@pytest.mark.parametrize(
    "spec, says",
    [
        (ModelSpec(model="tiny-test", pretrained="/no/such/file.pt", config_dir=CONFIGS), "not a file"),
        (ModelSpec(model="ViT-B-32", pretrained="no-such-tag"), "neither a file nor one of open_clip's tags"),
        (ModelSpec(model="no-such-model", pretrained="random"), "Unknown CLIP_MODEL"),
    ],
)
def test_unloadable_weights_fail_with_one_clear_message(spec, says):
    with pytest.raises(ModelLoadError, match=says) as caught:
        get_embedder(spec)
    assert "CLIP_" in str(caught.value)


def test_a_corrupt_checkpoint_names_the_variables(tmp_path):
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="CLIP_PRETRAINED"):
        get_embedder(ModelSpec(model="tiny-test", pretrained=str(checkpoint), config_dir=CONFIGS))


def test_a_hub_tag_without_network_fails_at_once_instead_of_retrying(monkeypatch):
    # This machine has no route to the hub; point at an unresolvable host to be sure elsewhere.
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    with pytest.raises(ModelLoadError, match="cannot be reached.*CLIP_PRETRAINED"):
        get_embedder(ModelSpec(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))


def test_fallback_to_random_weights_when_asked():
    spec = ModelSpec(model="tiny-test", pretrained="/missing.pt", config_dir=CONFIGS)
    embedder = get_embedder(spec, fallback_to_random=True)
    assert embedder.is_random and embedder.model_id == "tiny-test/random"
    assert get_embedder(spec) is embedder  # the rest of the process uses the same fallback


def test_torchvision_imports_with_the_cpu_torch():
    from indexer.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import open_clip  # noqa: F401
    import torchvision.transforms  # noqa: F401


def test_no_import_cycles_in_the_indexer_package():
    """Modules of indexer/ import each other in one direction only (module-level imports)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    modules = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (root / "indexer").rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.parse(path.read_text()).body:  # top level only: lazy imports inside functions are fine
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}

    def visit(name, trail):
        assert name not in trail, f"import cycle: {' -> '.join([*trail, name])}"
        for other in graph[name]:
            visit(other, [*trail, name])

    for name in graph:
        visit(name, [])


def test_importing_the_embedding_package_loads_neither_torch_nor_onnxruntime():
    import subprocess
    import sys

    code = "import sys, indexer.embedding, indexer.runtime_choice; print(sorted({'torch', 'onnxruntime', 'open_clip'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("entry_point", ["webapp.wsgi", "webapp.asgi"])
def test_a_web_process_runs_numpys_blas_on_one_thread(entry_point):
    """The model's thread pool and OpenBLAS' would take turns at the same cores: the encoding
    and the matrix-vector products after it both slowed (indexer.embedding.factory). The web
    entry points set it before serving; the indexer keeps its threads for large products."""
    import importlib

    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):  # as numpy starts on a host of 2 cores or more
        assert blas_threads() == {2}
        get_embedder(TINY)  # loading a model leaves them (an indexing process)
        assert blas_threads() == {2}
        importlib.reload(importlib.import_module(entry_point))
        assert blas_threads() == {1}

"""CLIP_RUNTIME=auto: measured once per host and export, kept with its figures, shown to people."""

import io
import json

import pytest
from django.core.management import call_command

from gallery.engine import embedder
from indexer import runtime_choice
from indexer.runtime_choice import CHOICE_FILE, RELEVANT_FLAGS, Figures, cpu_description, pick
from tests.searching import by_text

pytestmark = pytest.mark.usefixtures("fresh_embedders")


@pytest.fixture(autouse=True)
def auto(settings):
    settings.CLIP_RUNTIME = "auto"
    embedder.clear_runtime_choice()
    yield
    embedder.clear_runtime_choice()


@pytest.mark.django_db
def test_without_an_export_auto_is_torch(indexed_gallery):
    assert embedder.embedder().model_id == "tiny-test/random"
    assert by_text("a green circle")[0].image in indexed_gallery
    out = io.StringIO()
    call_command("runtime", stdout=out)
    assert "torch (CLIP_RUNTIME=auto, and no ONNX export exists" in out.getvalue()


@pytest.mark.django_db
def test_auto_measures_once_per_host_and_export_and_keeps_the_figures(indexed_gallery, settings, monkeypatch, stored_onnx_export):
    out = io.StringIO()
    call_command("runtime", "--measure", stdout=out)
    text = out.getvalue()
    for runtime in ("torch", "onnx", "onnx-int8"):
        assert f"| {runtime} |" in text
    cpu = cpu_description()
    assert f"CPU: {cpu['model']}" in text and all(flag in text for flag in cpu["flags"])

    kept = json.loads((settings.INDEX_CACHE_DIR / CHOICE_FILE).read_text())
    assert kept["cpu"] == cpu and kept["export"].startswith("tiny-test/random exported ")
    assert [row["runtime"] for row in kept["figures"]] == ["torch", "onnx", "onnx-int8"]
    assert all(row["text_p50_ms"] > 0 and row["images_per_s"] > 0 for row in kept["figures"])
    assert kept["runtime"] in [row["runtime"] for row in kept["figures"] if row["passes"]]

    # Another process on this host reads the kept choice instead of measuring again...
    embedder.clear_runtime_choice()
    monkeypatch.setattr(runtime_choice, "measure", lambda *a, **k: pytest.fail("measured again"))
    suffix = {"torch": "", "onnx": "#onnx-fp32", "onnx-int8": "#onnx-int8"}[kept["runtime"]]
    assert embedder.embedder().model_id == f"tiny-test/random{suffix}"
    # ...and searches the index (built with torch) through it: runtimes that pass the rule agree.
    assert by_text("a green circle")[0].image in indexed_gallery
    assert kept["reason"] in embedder.runtime_summary()
    monkeypatch.undo()

    # A new host of the same kind (a fresh serverless instance: empty cache) takes the choice from storage.
    (settings.INDEX_CACHE_DIR / CHOICE_FILE).unlink()
    embedder.clear_runtime_choice()
    monkeypatch.setattr(runtime_choice, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert embedder.runtime_spec()[1].measured_at == kept["measured_at"]
    monkeypatch.undo()

    # A choice kept for another export (or CPU) is measured again.
    (settings.INDEX_CACHE_DIR / CHOICE_FILE).write_text(json.dumps({**kept, "export": "an older export"}))
    embedder.clear_runtime_choice()
    embedder.runtime_spec()
    assert json.loads((settings.INDEX_CACHE_DIR / CHOICE_FILE).read_text())["export"] == kept["export"]


@pytest.mark.django_db
def test_index_versions_page_says_which_runtime_and_why(admin_client, indexed_gallery):
    page = admin_client.get("/admin/gallery/indexversion/").content.decode()
    assert "CLIP runtime: not chosen yet on this host" in page or "no ONNX export exists" in page
    embedder.runtime_spec()
    page = admin_client.get("/admin/gallery/indexversion/").content.decode()
    assert "torch (CLIP_RUNTIME=auto, and no ONNX export exists" in page


def test_the_fastest_runtime_that_agrees_wins_and_the_reason_says_why():
    figures = [
        Figures("torch", 157, 6.2, 1.0, 1.0, True),
        Figures("onnx", 101, 5.84, 1.0, 1.0, True),
        Figures("onnx-int8", 182, 4.46, 0.982, 0.8, False),  # the AVX2-only EPYC of issue #15
    ]
    runtime, reason = pick(figures)
    assert runtime == "onnx"
    assert "onnx-int8 fails the agreement rule (min cosine 0.9820 < 0.99" in reason and "torch 157.0 ms" in reason
    fast_int8 = [Figures("torch", 50, 22, 1.0, 1.0, True), Figures("onnx", 21, 42, 1.0, 1.0, True), Figures("onnx-int8", 11, 70, 0.999, 1.0, True)]
    assert pick(fast_int8)[0] == "onnx-int8"
    assert pick([Figures("onnx", error="no export")])[0] == "torch"


def test_the_cpu_is_named_with_its_instruction_sets():
    cpu = cpu_description()
    assert cpu["model"] and cpu["cores"] >= 1 and set(cpu["flags"]) <= set(RELEVANT_FLAGS)
    assert runtime_choice.cpu_line(cpu).startswith(cpu["model"])

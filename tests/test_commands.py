"""Management commands: import, embed, build, search, demo."""

import io

import pytest
from django.core.management import CommandError, call_command

from gallery.catalogue.samples import available_samples
from gallery.models import Image, IndexVersion
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_import_embed_build_search(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for seed in range(3):
        (folder / f"photo_{seed}.jpg").write_bytes(image_bytes(seed))
    (folder / "nested" / "copy.jpg").write_bytes(image_bytes(0))  # a duplicate
    (folder / "nested" / "broken.png").write_bytes(b"\x89PNG broken")
    (folder / "notes.txt").write_text("not looked at")

    assert "3 added, 1 already present, 1 skipped." in run("import_images", str(folder))
    assert Image.objects.count() == 3
    assert "Embedded 3 images (0 failed)" in run("embed_pending")
    assert "Published index" in run("build_index")
    assert "Nothing to publish" in run("build_index")
    assert "Published index" in run("build_index", "--force")

    lines = run("search", "a photo", "-k", "2").splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1" and lines[1].split()[0] == "2"
    twin = tmp_path / "query.jpg"
    twin.write_bytes(image_bytes(1))
    first = run("search", "--image", str(twin)).splitlines()[0]
    assert first.split()[-2:] == ["photo", "1"]


def test_search_command_errors_are_plain(tmp_path):
    with pytest.raises(CommandError, match="Give either a text query or --image"):
        run("search")
    with pytest.raises(CommandError, match="no index has been built"):
        run("search", "a cat")


def test_import_of_a_missing_path_is_an_error():
    with pytest.raises(CommandError, match="does not exist"):
        run("import_images", "/no/such/folder")


def test_demo_imports_the_sample_photos_and_builds_the_index():
    samples = available_samples()
    assert len(samples) >= 15
    out = run("demo")
    assert f"{len(samples)} sample photos added" in out
    assert IndexVersion.objects.get(is_current=True).item_count == len(samples)
    assert set(Image.objects.values_list("status", flat=True)) == {"indexed"}
    assert "0 sample photos added" in run("demo")  # a second run changes nothing
    assert IndexVersion.objects.count() == 1


def test_demo_falls_back_to_random_weights_and_says_so(settings, fresh_embedders):
    settings.CLIP_PRETRAINED = "/no/such/checkpoint.pt"
    out = run("demo")
    assert "not a file" in out and "RANDOM weights" in out
    assert IndexVersion.objects.get().model == "tiny-test/random"


def test_outside_the_demo_a_missing_model_is_an_error(settings, tmp_path):
    settings.CLIP_PRETRAINED = "/no/such/checkpoint.pt"
    (tmp_path / "a.jpg").write_bytes(image_bytes(1))
    run("import_images", str(tmp_path))
    with pytest.raises(CommandError, match="CLIP_PRETRAINED points at /no/such/checkpoint.pt"):
        run("embed_pending")


@pytest.mark.django_db(transaction=False)
def test_commands_read_what_make_run_chose_and_the_environment_wins(tmp_path):
    """var/settings.env (written by scripts/run) is read by every command; exported variables win."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    chosen = tmp_path / "settings.env"
    chosen.write_text("DJANGO_SECRET_KEY='chosen-by-the-run'\nCLIP_MODEL='tiny-test'\nCLIP_FALLBACK_TO_RANDOM='1'\n")
    show = "from django.conf import settings as s; print(s.SECRET_KEY, s.CLIP_MODEL, s.CLIP_FALLBACK_TO_RANDOM)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CLIP_", "GALLERY_", "DATABASE_URL"))}
    env |= {"GALLERY_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "webapp.settings"}

    def shell(**extra):
        done = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", show], cwd=root, env={**env, **extra},
                              capture_output=True, text=True, timeout=120)
        return done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr.strip().splitlines()[-1]

    assert shell() == "chosen-by-the-run tiny-test True"
    assert shell(CLIP_MODEL="ViT-B-16") == "chosen-by-the-run ViT-B-16 True"
    assert shell(GALLERY_SETTINGS_FILE="").endswith("Set the DJANGO_SECRET_KEY environment variable")

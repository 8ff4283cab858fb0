"""What must hold when things go wrong or happen at once (issue #12, 5-9): concurrent uploads of
the same bytes, memory per upload, local index copies, unreadable originals, racing publishers."""

import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageDraw

from gallery import indexing
from gallery.catalogue import uploads
from gallery.engine.index_cache import current_index
from gallery.errors import StorageUnavailable
from gallery.indexing import (
    EmbedReport,
    images_embed_pending,
    index_activate,
    index_build,
    index_publish,
    is_permanent_read_error,
    publish_lease,
)
from gallery.models import Image, IndexVersion, PublishLease
from tests.conftest import on_object_storage, stored_files
from tests.images import image_bytes

ROOT = Path(__file__).resolve().parent.parent
MODEL = "tiny-test/random"


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def indexed_ids() -> set[int]:
    return set(Image.objects.filter(status="indexed").values_list("pk", flat=True))


# --- 5. the same bytes twice at once ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.local_storage  # the local folder's part
def test_the_same_bytes_uploaded_twice_at_once_keep_the_winners_files(monkeypatch, settings):
    """Both uploads pass the "already there?" check before either stores anything (the barrier
    holds each just after it), so both write files and race for the row."""
    if not on_object_storage():
        # Object storage overwrites a name that exists; so does the local folder here, instead
        # of picking a free name, so two uploads that chose the same names would collide.
        default = settings.STORAGES["default"]
        settings.STORAGES = {**settings.STORAGES, "default": {**default, "OPTIONS": {**default.get("OPTIONS", {}), "allow_overwrite": True}}}
    barrier = threading.Barrier(2, timeout=30)
    decode = uploads.decode_upload

    def decode_then_meet(*args, **kwargs):
        decoded = decode(*args, **kwargs)
        barrier.wait()
        return decoded

    monkeypatch.setattr(uploads, "decode_upload", decode_then_meet)
    data = image_bytes(7, size=(640, 480))
    results, errors = [], []

    def upload():
        try:
            results.append(uploads.image_create(file=io.BytesIO(data), filename="twice.jpg"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(results) == 2
    image = Image.objects.get()
    assert sorted(created for _, created in results) == [False, True]
    assert {found.pk for found, _ in results} == {image.pk}
    assert default_storage.exists(image.file.name) and default_storage.exists(image.thumbnail.name)
    assert default_storage.open(image.file.name).read() == data
    assert stored_files() == sorted([image.file.name, image.thumbnail.name])


# --- 6. memory per upload ---------------------------------------------------------------------

MEMORY_SCRIPT = r"""
import io, json, sys, django
django.setup()
from gallery.errors import UploadRejected
from gallery.catalogue.uploads import image_create
from tests.images import image_bytes

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

image_create(file=io.BytesIO(image_bytes(1)), filename="warm-up.jpg")  # imports and first-use costs
growth = {}
for path in sys.argv[1:]:
    with open(path, "rb") as handle:
        data = handle.read()  # the upload's bytes are in memory before the service runs, as in a request
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")  # the peak (VmHWM) starts again from the current size
    before = status("VmRSS")
    try:
        outcome = "stored" if image_create(file=io.BytesIO(data), filename=path)[1] else "present"
    except UploadRejected as exc:
        outcome = "rejected: " + str(exc)
    growth[path] = {"outcome": outcome, "bytes": status("VmHWM") - before}
    del data
print(json.dumps(growth))
"""


def _picture(path: Path, size, fmt, mode="RGB", **save):
    colour = {"1": lambda n: n % 2, "RGB": lambda n: (30 * n, 255 - 30 * n, 90), "RGBA": lambda n: (30 * n, 90, 60, 40 + 20 * n)}[mode]
    picture = PILImage.new(mode, size, colour(9))
    draw = ImageDraw.Draw(picture)
    for n in range(8):  # some content, so neither format compresses to nothing
        box = [n * size[0] // 9, n * size[1] // 11, (n + 2) * size[0] // 9, (n + 3) * size[1] // 11]
        draw.ellipse(box, fill=colour(n))
    picture.save(path, format=fmt, **save)
    return path


@pytest.fixture(scope="module")
def large_pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("large")
    return {
        "too-many-pixels": _picture(folder / "huge.png", (10_000, 10_000), "PNG", mode="1"),
        "30-megapixel-png": _picture(folder / "big.png", (6_000, 5_000), "PNG", compress_level=1),
        "30-megapixel-transparent-png": _picture(folder / "big-rgba.png", (5_000, 6_000), "PNG", mode="RGBA", compress_level=1),
        "48-megapixel-jpeg": _picture(folder / "big.jpg", (8_000, 6_000), "JPEG", quality=85),
    }


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc to reset the peak RSS")
@pytest.mark.django_db(transaction=True)
def test_memory_per_upload_stays_bounded(large_pictures, settings):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "UPLOAD_MAX_BYTES": str(200 * 1024 * 1024),  # the pixel limits are under test, not the byte limit
    }
    if on_object_storage():
        env["S3_PREFIX"] = settings.STORAGES["default"]["OPTIONS"]["location"]
    paths = [str(path) for path in large_pictures.values()]
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *paths], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    growth = json.loads(done.stdout.strip().splitlines()[-1])
    by_name = {name: growth[str(path)] for name, path in large_pictures.items()}
    assert by_name["too-many-pixels"]["outcome"].startswith("rejected: The image has too many pixels (10000x10000)")
    assert {by_name[name]["outcome"] for name in by_name if name != "too-many-pixels"} == {"stored"}
    for name, measured in by_name.items():
        assert measured["bytes"] < 200 * 1024 * 1024, f"{name}: {measured['bytes'] / 2**20:.0f} MiB"
    stored = Image.objects.order_by("width", "height")
    assert [(image.width, image.height) for image in stored] == [(96, 64), (5_000, 6_000), (6_000, 5_000), (8_000, 6_000)]
    assert len(stored_files()) == 8  # nothing of the refused one


@pytest.mark.django_db
@pytest.mark.parametrize("mode, fmt", [("P", "GIF"), ("P", "PNG"), ("1", "PNG")])
def test_large_palette_and_one_bit_images_are_embedded(upload, mode, fmt):
    """Reduced before embedding like every large image: a mode ``reduce()`` refuses (palette,
    1-bit) is converted first instead of failing the image."""
    picture = PILImage.new("RGB", (2_000, 1_500), (200, 40, 40)).convert(mode)
    out = io.BytesIO()
    picture.save(out, format=fmt)
    image, _ = upload(data=out.getvalue(), filename=f"large.{fmt.lower()}")
    report = images_embed_pending()
    image.refresh_from_db()
    assert (report.embedded, report.failed, image.error) == (1, 0, "")
    assert image.embedding is not None and image.width == 2_000


# --- 7. local index copies --------------------------------------------------------------------


def local_copies(settings) -> list[str]:
    folder = Path(settings.INDEX_CACHE_DIR) / "indexes"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def publish_one_more(upload, seed):
    upload(seed)
    images_embed_pending()
    version = index_publish()
    assert version is not None
    return version.version


@pytest.mark.django_db
def test_a_web_host_keeps_only_the_index_versions_in_use(upload, settings):
    versions = []
    for seed in range(5):
        versions.append(publish_one_more(upload, seed))
        assert current_index().version == versions[-1]  # this process serves the newest
    assert local_copies(settings) == [versions[-1]]

    # Another process on this host still serves the fifth version: its shared lock keeps it.
    marker = Path(settings.INDEX_CACHE_DIR) / "indexes" / f".{versions[-1]}.in-use"
    other = open(marker, "a")
    fcntl.flock(other, fcntl.LOCK_SH)
    try:
        for seed in (5, 6):
            versions.append(publish_one_more(upload, seed))
            assert current_index().version == versions[-1]
        assert local_copies(settings) == sorted([versions[4], versions[-1]])
        assert len(current_index()) == 7
    finally:
        other.close()  # that process swapped too
    versions.append(publish_one_more(upload, 7))
    assert current_index().version == versions[-1]
    assert local_copies(settings) == [versions[-1]]


@pytest.mark.django_db
def test_a_version_over_principal_components_is_stored_fetched_and_re_ranked(settings, media):
    """A version whose forest is over principal components carries its projection and whole
    vectors to storage; a host without a copy fetches them with it and answers with exact cosines."""
    from benchmarks.fresh_segment import add_rows
    from benchmarks.index import clip_like_vectors
    from gallery.engine.index_cache import clear_index_cache
    from indexer.index import FILES

    settings.INDEX_REDUCED_DIMS = 8
    vectors = clip_like_vectors(600, dim=32, seed=4)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    add_rows(vectors, model_id=MODEL, status="pending", start=0)
    version = index_publish(force=True).version
    stored = [name for name in FILES if default_storage.exists(f"indexes/{version}/{name}")]
    assert stored == ["index-reduced.ann", "ids.npy", "projection.npy", "vectors.npy", "manifest.json"], stored
    clear_index_cache()
    shutil.rmtree(Path(settings.INDEX_CACHE_DIR) / "indexes" / version)  # a host that never had it
    index = current_index()
    assert index.manifest.reduced_dim == 8 and (index.directory / "vectors.npy").is_file()
    ids = np.array(Image.objects.order_by("pk").values_list("pk", flat=True))
    hits = index.query(vectors[321], 5)
    assert hits[0] == (ids[321], pytest.approx(1.0, abs=1e-5))
    exact = dict(zip(ids.tolist(), (vectors @ vectors[321]).tolist()))
    assert [score for _, score in hits] == pytest.approx([exact[pk] for pk, _ in hits], abs=1e-5)


# --- 8. unreadable originals -----------------------------------------------------------------


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    "exc, permanent",
    [
        (client_error(403, "AccessDenied"), True),
        (client_error(404, "NoSuchKey"), True),
        (client_error(503, "SlowDown"), False),
        (client_error(500, "InternalError"), False),
        (client_error(429, "TooManyRequests"), False),
        (IsADirectoryError(21, "Is a directory"), True),
        (FileNotFoundError(2, "No such file"), True),
        (TimeoutError("read timed out"), False),
        (ConnectionError("connection reset"), False),
    ],
    ids=["403", "404", "503", "500", "429", "directory", "missing", "timeout", "connection"],
)
def test_which_read_errors_are_permanent(exc, permanent):
    assert is_permanent_read_error(exc) is permanent


def _storage():
    default_storage.exists("x")  # the lazy default storage, set up
    return default_storage._wrapped


@pytest.mark.django_db
@pytest.mark.parametrize("how", [pytest.param("directory", marks=pytest.mark.local_storage), "forbidden"])
def test_one_unreadable_original_fails_alone(upload, monkeypatch, how):
    good = [upload(seed)[0] for seed in range(3)]
    broken, _ = upload(9)
    if how == "directory":
        if on_object_storage():
            pytest.skip("a directory in place of a file is a local-disk failure")
        path = Path(default_storage.path(broken.file.name))
        path.unlink()
        path.mkdir()
    else:  # object storage refusing one object, as S3 answers 403
        storage, real_open = _storage(), _storage().open

        def refusing_open(name, mode="rb"):
            if name == broken.file.name:
                raise client_error(403, "AccessDenied")
            return real_open(name, mode)

        monkeypatch.setattr(storage, "open", refusing_open)
    report = images_embed_pending()
    assert (report.embedded, report.failed) == (3, 1)
    broken.refresh_from_db()
    assert broken.status == "failed"
    assert ("IsADirectoryError" if how == "directory" else "AccessDenied") in broken.error
    assert index_publish() is not None
    assert indexed_ids() == {image.pk for image in good}
    assert set(current_index().ids.tolist()) == indexed_ids()


@pytest.mark.django_db
@pytest.mark.parametrize("error", [TimeoutError("read timed out"), ConnectionError("connection reset by peer")])
def test_transient_read_errors_are_retried_then_fail_the_run(upload, monkeypatch, error):
    monkeypatch.setattr(indexing, "READ_RETRY_SECONDS", 0)
    images = [upload(seed)[0] for seed in range(2)]
    storage, real_open = _storage(), _storage().open
    attempts: dict[str, int] = {}
    failures = {"left": indexing.READ_ATTEMPTS - 1}  # first: a store that recovers in time

    def flaky_open(name, mode="rb"):
        if name.startswith("originals/") or "/originals/" in name:
            attempts[name] = attempts.get(name, 0) + 1
            if failures["left"] > 0:
                failures["left"] -= 1
                raise error
        return real_open(name, mode)

    monkeypatch.setattr(storage, "open", flaky_open)
    report = images_embed_pending(ids=[images[0].pk])
    assert (report.embedded, report.failed) == (1, 0)
    assert attempts[images[0].file.name] == indexing.READ_ATTEMPTS

    # Then a store that stays down: every read is tried READ_ATTEMPTS times, and the run fails.
    attempts.clear()
    failures["left"] = 10**6
    with pytest.raises(StorageUnavailable):
        images_embed_pending()
    assert attempts == {images[1].file.name: indexing.READ_ATTEMPTS}
    waiting = Image.objects.get(pk=images[1].pk)
    assert (waiting.status, waiting.embedding, waiting.error) == ("pending", None, "")
    assert Image.objects.filter(status="failed").count() == 0


# --- 9. racing publishers ---------------------------------------------------------------------


def two_builds(upload):
    """Build A over three vectors; then two more uploads are embedded and B is built over five."""
    first = [upload(seed)[0] for seed in range(3)]
    images_embed_pending()
    build_a = index_build(MODEL)
    later = [upload(seed)[0] for seed in range(3, 5)]
    images_embed_pending()
    build_b = index_build(MODEL)
    assert build_a.snapshot_at < build_b.snapshot_at
    return build_a, build_b, first + later


def stored_index(version: str) -> list[str]:
    return [name for name in ("index.ann", "ids.npy", "manifest.json") if default_storage.exists(f"indexes/{version}/{name}")]


@pytest.mark.django_db
def test_an_older_build_never_replaces_a_newer_one(upload):
    build_a, build_b, images = two_builds(upload)
    b = index_activate(build_b, embed_report=EmbedReport())
    assert b is not None and b.item_count == 5
    assert index_activate(build_a, embed_report=EmbedReport()) is None
    assert IndexVersion.objects.get(is_current=True).version == b.version
    assert list(IndexVersion.objects.values_list("version", flat=True)) == [b.version]
    assert stored_index(build_a.version) == [] and len(stored_index(b.version)) == 3
    assert not build_a.folder.exists()
    assert indexed_ids() == {image.pk for image in images}
    assert set(np.asarray(current_index().ids).tolist()) >= indexed_ids()


@pytest.mark.django_db
def test_builds_activated_in_order_both_publish(upload):
    build_a, build_b, images = two_builds(upload)
    a = index_activate(build_a, embed_report=EmbedReport())
    assert a is not None and indexed_ids() == {image.pk for image in images[:3]}
    b = index_activate(build_b, embed_report=EmbedReport())
    assert b is not None and IndexVersion.objects.get(is_current=True).version == b.version
    assert indexed_ids() == {image.pk for image in images}
    assert set(np.asarray(current_index().ids).tolist()) == indexed_ids()


@pytest.mark.django_db
def test_a_held_lease_stops_other_publishers_until_it_expires(upload):
    upload(1)
    images_embed_pending()
    with publish_lease() as held:
        assert held
        assert index_publish() is None
        assert IndexVersion.objects.count() == 0 and stored_files(folder="indexes") == []
        assert Image.objects.get().status == "pending"
    # A publisher that crashed while holding it: its lease runs out, then the next one publishes.
    PublishLease.objects.filter(pk=1).update(holder="crashed-host:1:abcd", expires_at=timezone.now() + timedelta(minutes=5))
    assert index_publish() is None
    PublishLease.objects.filter(pk=1).update(expires_at=timezone.now() - timedelta(seconds=1))
    version = index_publish()
    assert version is not None and IndexVersion.objects.get(is_current=True) == version
    assert Image.objects.get().status == "indexed"
    assert PublishLease.objects.get(pk=1).holder == ""  # released after publishing

import io
import os
import uuid
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery.catalogue.keywords import forget_statistics as forget_word_counts
from gallery.catalogue.sampling import forget as forget_id_sample
from gallery.catalogue.visible import forget as forget_left_out
from gallery.engine.backend import clear_backend_cache
from gallery.engine.fresh_segment import clear_fresh_cache
from gallery.engine.index_cache import clear_index_cache
from gallery.search.pins import forget as forget_pinned_queries
from gallery.search.recent import forget as forget_recent_rankings
from gallery.search.relevance import forget as forget_relevance_backgrounds
from indexer.embedding import ModelSpec, clear_embedders
from tests.images import image_bytes

CLIP_CONFIGS = str(Path(__file__).parent / "clip_configs")
TINY = ModelSpec(model="tiny-test", pretrained="random", config_dir=CLIP_CONFIGS)


@pytest.fixture
def fresh_embedders():
    """No model loaded before or after the test."""
    clear_embedders()
    yield
    clear_embedders()


@pytest.fixture(scope="session")
def tiny_onnx_export(tmp_path_factory):
    """One ONNX export of the tiny model (every int8 variant tried) for the whole run: (folder, manifest)."""
    from indexer.embedding import get_embedder
    from indexer.images import open_rgb
    from indexer.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    return folder, export_onnx(get_embedder(TINY), folder, photos=[open_rgb(image_bytes(seed)) for seed in range(8)])


@pytest.fixture
def stored_onnx_export(tiny_onnx_export, media):
    """That export in this test's storage, where `manage.py export_onnx` puts it."""
    from gallery.engine.artifacts import store_artifact
    from gallery.engine.onnx_models import storage_prefix
    from indexer.onnx_export import manifest_files

    folder, manifest = tiny_onnx_export
    store_artifact(folder, storage_prefix(TINY), manifest_files(manifest))
    return manifest


@pytest.fixture(scope="session")
def s3_bucket():
    """With S3_BUCKET set (scripts/s3-server), the suite runs on object storage: the tests
    create the bucket; each test then works under a prefix of its own."""
    bucket = os.environ.get("S3_BUCKET")
    if bucket:
        s3_client().create_bucket(Bucket=bucket)
    return bucket


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT_URL"],
        region_name=os.environ.get("S3_REGION", "us-east-1"),
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(autouse=True)
def media(settings, tmp_path, s3_bucket):
    """A fresh media folder (or bucket prefix) and index cache for every test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.INDEX_CACHE_DIR = tmp_path / "index-cache"
    if s3_bucket:
        default = settings.STORAGES["default"]
        location = f"tests/{uuid.uuid4().hex[:12]}"
        settings.STORAGES = {**settings.STORAGES, "default": {**default, "OPTIONS": {**default["OPTIONS"], "location": location}}}
    clear_index_cache()
    clear_fresh_cache()
    clear_backend_cache()
    forget_relevance_backgrounds()
    forget_recent_rankings()
    forget_id_sample()
    forget_word_counts()
    forget_left_out()
    forget_pinned_queries()
    yield settings.MEDIA_ROOT
    clear_index_cache()
    clear_fresh_cache()
    clear_backend_cache()
    forget_relevance_backgrounds()
    forget_recent_rankings()
    forget_id_sample()
    forget_left_out()
    cache.clear()  # what a test cached with INDEX_STATUS_CACHE_SECONDS on (counts, facets) is its own


MILVUS_FIXTURES = {"on_milvus", "milvus_uri"}


def pytest_collection_modifyitems(items):
    """Mark every test that talks to Milvus (through these fixtures, or as the ``milvus`` case
    of a test parametrised on the engine): `scripts/test` runs them again on a real server with
    ``-m milvus``."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if MILVUS_FIXTURES & set(item.fixturenames) or "milvus" in params.values():
            item.add_marker(pytest.mark.milvus)


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory):
    """The Milvus the tests use: ``MILVUS_URI`` when set (`scripts/test`'s pass on a real
    server sets ``http://127.0.0.1:19540``), otherwise one Milvus Lite file for the run (it
    takes seconds to start). Each test works under a collection prefix of its own and drops
    what it made."""
    return os.environ.get("MILVUS_URI") or str(tmp_path_factory.mktemp("milvus") / "gallery.db")


def on_real_milvus() -> bool:
    return os.environ.get("MILVUS_URI", "").startswith(("http://", "https://"))


def milvus_prefix() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def on_milvus(settings, milvus_uri):
    """This test's gallery on Milvus, under a collection prefix of its own."""
    prefix = milvus_prefix()
    settings.INDEX_BACKEND = "milvus"
    settings.MILVUS_URI, settings.MILVUS_COLLECTION_PREFIX = milvus_uri, prefix
    settings.MILVUS_CONSISTENCY_LEVEL = "Strong"  # a test searches right after it writes
    clear_backend_cache()
    yield
    clear_backend_cache()
    drop_milvus_collections(uri=milvus_uri, prefix=prefix)  # a test may have pointed elsewhere


@pytest.fixture(params=["annoy", "milvus"])
def index_engine(request, settings):
    """Runs a test on both index backends: Annoy files, and Milvus (Lite, or the server
    ``MILVUS_URI`` names). Use it before the gallery fixtures:
    ``@pytest.mark.usefixtures("index_engine")``."""
    settings.INDEX_BACKEND = "annoy"
    if request.param == "milvus":
        request.getfixturevalue("on_milvus")
    return request.param


def drop_milvus_collections(*, uri, prefix):
    """Drop a test's alias and collections: Lite keeps loaded ones in memory, and a server
    keeps everything."""
    from indexer.backends import get_backend

    backend = get_backend("milvus", uri=uri, prefix=prefix, timeout=10)
    try:
        backend.drop_all()
    finally:
        backend.close()


def stored_files(media_root=None, folder=""):
    """Every file in the default storage (local folder or bucket prefix), as storage names."""
    from django.core.files.storage import default_storage

    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    names = [f"{folder}/{name}" if folder else name for name in files]
    for sub in folders:
        names += stored_files(folder=f"{folder}/{sub}" if folder else sub)
    return sorted(names)


def on_object_storage() -> bool:
    return bool(os.environ.get("S3_BUCKET"))


def local_files_marks(reason: str) -> list:
    """The marks of a test of what only local files do: skipped on object storage, and marked
    ``local_storage`` so that `scripts/test` runs it on PostgreSQL with local files too (its
    PostgreSQL pass runs on object storage). For ``pytest.param(..., marks=...)``."""
    return [pytest.mark.local_storage, pytest.mark.skipif(on_object_storage(), reason=reason)]


def local_files_only(reason: str):
    """Those marks as one decorator."""

    def mark(test):
        for each in local_files_marks(reason):
            test = each(test)
        return test

    return mark


@pytest.fixture
def upload():
    """upload(seed) -> (image, created): a generated photo through the upload service."""
    from gallery.catalogue.uploads import image_create

    def _upload(seed=0, *, title="", data=None, filename=None, **kwargs):
        data = data if data is not None else image_bytes(seed, **kwargs)
        return image_create(file=io.BytesIO(data), filename=filename or f"photo_{seed}.jpg", title=title)

    return _upload


@pytest.fixture
def indexed_gallery(db, upload):
    """20 images, embedded and published: more than one page of results."""
    from gallery.indexing import index_refresh
    from gallery.models import Image

    pks = [upload(seed, title=f"Photo {seed}")[0].pk for seed in range(20)]
    report = index_refresh()
    assert report.published is not None
    return list(Image.objects.filter(pk__in=pks).order_by("pk"))


@pytest.fixture
def member(db, django_user_model):
    """A signed-in member without any model permission: may upload, may not curate."""
    return django_user_model.objects.create_user("member", password="member-password")


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def as_upload(data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)

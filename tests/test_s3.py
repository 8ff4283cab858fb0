"""Object storage against a real S3-compatible server (Ceph radosgw on loopback, started by
scripts/s3-server from .ci/run). Skipped, saying why, when S3_BUCKET is not set."""

import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.db import connection
from rest_framework.test import APIClient

from gallery import indexing
from gallery.catalogue.curation import image_delete
from gallery.catalogue.uploads import image_create
from gallery.engine.index_cache import clear_index_cache, current_index
from gallery.errors import StorageUnavailable, Unavailable
from gallery.models import Image, IndexVersion
from tests.conftest import as_upload, s3_client
from tests.images import image_bytes
from tests.searching import similar

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(not os.environ.get("S3_BUCKET"), reason="no S3 server configured: run scripts/s3-server start and set S3_*"),
    pytest.mark.django_db(transaction=True),
]


def keys(prefix=""):
    location = django_settings.STORAGES["default"]["OPTIONS"]["location"]
    listing = s3_client().list_objects_v2(Bucket=os.environ["S3_BUCKET"], Prefix=f"{location}/{prefix}")
    return sorted(item["Key"][len(location) + 1 :] for item in listing.get("Contents", []))


def test_upload_stores_objects_and_delete_removes_them(upload, django_capture_on_commit_callbacks):
    image, _ = upload(1)
    assert keys() == sorted([image.file.name, image.thumbnail.name])
    url = image.thumbnail.url
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url  # short-lived, presigned
    with urllib.request.urlopen(url) as response:
        assert response.read()[:2] == b"\xff\xd8" and "immutable" in response.headers["Cache-Control"]
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)
    assert keys() == []


def test_index_versions_are_versioned_keys_with_their_manifest(indexed_gallery):
    version = IndexVersion.objects.get(is_current=True)
    assert keys("indexes/") == [f"indexes/{version.version}/{name}" for name in ("ids.npy", "index.ann", "manifest.json")]
    manifest = json.loads(default_storage.open(f"indexes/{version.version}/manifest.json").read())
    assert manifest["checksum"] == version.checksum and manifest["item_count"] == 20


def test_a_fresh_process_with_only_the_bucket_and_the_database_finds_the_twin(indexed_gallery, tmp_path):
    twin = tmp_path / "query.jpg"
    twin.write_bytes(image_bytes(12))
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}" if connection.vendor == "postgresql" else f"sqlite:///{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        "S3_PREFIX": django_settings.STORAGES["default"]["OPTIONS"]["location"],
        "INDEX_CACHE_DIR": str(tmp_path / "fresh-cache"),
        "GALLERY_VAR_DIR": str(tmp_path / "fresh-var"),
    }
    done = subprocess.run([sys.executable, "manage.py", "search", "--image", str(twin), "-k", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["Photo", "12"]
    assert (tmp_path / "fresh-cache" / "indexes" / IndexVersion.objects.get(is_current=True).version / "index.ann").exists()


@pytest.fixture
def storage_down(settings):
    """The same bucket settings, at an address where nothing answers."""
    default = settings.STORAGES["default"]
    options = {**default["OPTIONS"], "endpoint_url": "http://127.0.0.1:9"}
    settings.STORAGES = {**settings.STORAGES, "default": {**default, "OPTIONS": options}}


def test_storage_down_fails_uploads_clearly_and_saves_nothing(client, storage_down, settings, django_user_model):
    with pytest.raises(StorageUnavailable, match="nothing was saved"):
        image_create(file=io.BytesIO(image_bytes(2)), filename="x.jpg")
    member = django_user_model.objects.create_user("member")  # members upload
    client.force_login(member)
    page = client.post("/upload/", {"files": [as_upload(image_bytes(3))]})  # the page without JavaScript
    assert page.status_code == 400 and "try again later" in page.content.decode()
    api = APIClient()
    api.force_authenticate(member)
    response = api.post("/api/v1/images/", {"file": as_upload(image_bytes(3))})
    assert response.status_code == 503 and "try again later" in response.json()["detail"]
    assert Image.objects.count() == 0


def test_search_keeps_serving_the_cached_index_while_storage_is_down(indexed_gallery, upload, settings):
    import shutil

    old = current_index().version  # this process serves the old version
    new_image, _ = upload(77)
    new = indexing.index_refresh().published.version  # as the DAG would, elsewhere:
    shutil.rmtree(Path(settings.INDEX_CACHE_DIR) / "indexes" / new)  # this host has no copy of it
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES, "default": {**default, "OPTIONS": {**default["OPTIONS"], "endpoint_url": "http://127.0.0.1:9"}}}
    hits = similar(Image.objects.get(pk=indexed_gallery[0].pk))
    assert hits[0].image.pk == indexed_gallery[0].pk and current_index().version == old
    clear_index_cache()  # a process with nothing loaded says so instead of failing
    with pytest.raises(Unavailable, match="unavailable for a moment"):
        similar(indexed_gallery[0])
    settings.STORAGES = {**settings.STORAGES, "default": default}  # storage is back
    assert current_index().version == new
    assert similar(Image.objects.get(pk=new_image.pk))[0].image.pk == new_image.pk


def test_embedding_while_storage_is_down_leaves_rows_pending(upload, settings):
    image, _ = upload(4)
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES, "default": {**default, "OPTIONS": {**default["OPTIONS"], "endpoint_url": "http://127.0.0.1:9"}}}
    with pytest.raises(StorageUnavailable):
        indexing.images_embed_pending()
    assert Image.objects.get(pk=image.pk).status == "pending"  # retried by the next run, not failed


def test_the_serverless_handler_serves_a_search(indexed_gallery, settings):
    from webapp.lambda_handler import handler

    settings.ALLOWED_HOSTS = ["gallery.example.org"]  # DJANGO_ALLOWED_HOSTS in a deployment
    event = {  # API Gateway REST (v1) proxy event
        "httpMethod": "GET", "path": "/api/v1/search/", "resource": "/{proxy+}",
        "queryStringParameters": {"q": "a red square"}, "multiValueQueryStringParameters": {"q": ["a red square"]},
        "headers": {"Host": "gallery.example.org", "X-Forwarded-Proto": "https"},
        "multiValueHeaders": {"Host": ["gallery.example.org"], "X-Forwarded-Proto": ["https"]},
        "body": None, "isBase64Encoded": False, "requestContext": {"stage": "prod"},
    }
    response = handler(event, None)
    assert response["statusCode"] == 200, response["body"][:500]
    body = json.loads(response["body"])
    assert body["count"] == 20 and body["results"][0]["rank"] == 1


def test_cold_start_benchmark_runs():
    """benchmarks/cold_start.py at a tiny size (its figures live in docs/performance.md)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("DJANGO_SETTINGS_MODULE", "S3_BUCKET", "S3_PREFIX"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "benchmarks.cold_start", "--items", "50", "--model", "tiny-test",
                           "--config-dir", str(ROOT / "tests" / "clip_configs")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cold total ms" in done.stdout

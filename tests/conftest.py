import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery.index_cache import clear_index_cache
from tests.images import image_bytes


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """A fresh media folder and index cache for every test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.INDEX_CACHE_DIR = tmp_path / "index-cache"
    clear_index_cache()
    yield settings.MEDIA_ROOT
    clear_index_cache()


def stored_files(media_root):
    return sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())


@pytest.fixture
def upload():
    """upload(seed) -> (image, created): a generated photo through the upload service."""
    from gallery.uploads import image_create

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


def as_upload(data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)

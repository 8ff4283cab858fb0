"""The upload service: stored rows and files, dedupe, and refusals that leave nothing behind."""

import io

import pytest

from gallery.catalogue.curation import image_delete
from gallery.catalogue.uploads import image_create
from gallery.errors import StorageUnavailable, UploadRejected
from gallery.models import Image
from tests.conftest import stored_files
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


def test_an_upload_is_stored_pending_with_its_thumbnail(upload, media):
    image, created = upload(1, filename="red_running-shoes.jpg", size=(300, 200))
    assert created
    row = Image.objects.get()
    assert row.status == Image.Status.PENDING and row.embedding is None
    assert row.title == "red running shoes"  # from the file name
    assert (row.width, row.height) == (300, 200)
    assert row.file.read() == image_bytes(1, size=(300, 200))
    assert stored_files(media) == sorted([row.file.name, row.thumbnail.name])
    assert row.thumbnail.name.startswith("thumbnails/") and row.file.name.startswith("originals/")


def test_the_same_bytes_again_return_the_existing_image(upload, media):
    first, created = upload(2, title="first")
    again, created_again = upload(2, title="second")
    assert created and not created_again
    assert again.pk == first.pk and again.title == "first"
    assert Image.objects.count() == 1 and len(stored_files(media)) == 2


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not an image"),
        (image_bytes(3)[:200], "damaged or truncated"),
    ],
    ids=["zero-bytes", "not-an-image", "truncated"],
)
def test_bad_uploads_leave_no_row_and_no_file(data, says, media):
    with pytest.raises(UploadRejected, match=says):
        image_create(file=io.BytesIO(data), filename="bad.jpg")
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_too_many_pixels_is_refused(settings, media):
    settings.UPLOAD_MAX_PIXELS = 50_000
    with pytest.raises(UploadRejected, match="too many pixels"):
        image_create(file=io.BytesIO(image_bytes(4, size=(400, 300), fmt="PNG")))
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_too_large_a_file_is_refused(settings, media):
    settings.UPLOAD_MAX_BYTES = 1000
    with pytest.raises(UploadRejected, match="too large"):
        image_create(file=io.BytesIO(image_bytes(5, size=(400, 300), fmt="PNG")))
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_a_storage_failure_leaves_nothing_half_saved(monkeypatch, media):
    from django.core.files.storage import storages

    storage = storages["default"]
    real_save = storage.save

    def save(name, content, **kwargs):
        if name.startswith("thumbnails/"):
            raise OSError("disk full")
        return real_save(name, content, **kwargs)

    monkeypatch.setattr(storage, "save", save)
    with pytest.raises(StorageUnavailable, match="nothing was saved"):
        image_create(file=io.BytesIO(image_bytes(6)))
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_delete_removes_row_and_files(upload, media, django_capture_on_commit_callbacks):
    image, _ = upload(7)
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=image)
    assert Image.objects.count() == 0 and stored_files(media) == []

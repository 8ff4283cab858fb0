"""The Django admin: curators upload, hide, re-embed, reindex and delete through the services."""

import pytest

from gallery.models import Image, IndexVersion
from tests.conftest import as_upload, stored_files
from tests.images import image_bytes

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/gallery/image/"


def test_changelist_shows_thumbnails_and_filters(admin_client, indexed_gallery):
    text = admin_client.get(CHANGELIST + "?status__exact=indexed").content.decode()
    assert text.count('style="height:4rem') == 20
    assert admin_client.get(CHANGELIST + "?q=Photo+17").content.decode().count('style="height:4rem') == 1


def test_adding_in_the_admin_uses_the_upload_service(admin_client, media):
    response = admin_client.post(CHANGELIST + "add/", {"upload": as_upload(image_bytes(1)), "title": "From admin", "description": ""})
    image = Image.objects.get()
    assert response.status_code == 302 and image.title == "From admin" and image.status == "pending"
    assert stored_files(media) == sorted([image.file.name, image.thumbnail.name])
    again = admin_client.post(CHANGELIST + "add/", {"upload": as_upload(image_bytes(1)), "title": "Dup", "description": ""})
    assert again.status_code == 302 and Image.objects.count() == 1


def test_adding_a_broken_file_in_the_admin_shows_the_reason(admin_client, media):
    response = admin_client.post(CHANGELIST + "add/", {"upload": as_upload(b"nope"), "title": "", "description": ""})
    assert response.status_code == 200 and "not an image" in response.content.decode()
    assert Image.objects.count() == 0 and stored_files(media) == []


def test_actions_hide_unhide_and_reembed(admin_client, indexed_gallery):
    chosen = [str(image.pk) for image in indexed_gallery[:3]]
    admin_client.post(CHANGELIST, {"action": "hide", "_selected_action": chosen})
    assert Image.objects.filter(hidden=True).count() == 3
    admin_client.post(CHANGELIST, {"action": "unhide", "_selected_action": chosen[:1]})
    assert Image.objects.filter(hidden=True).count() == 2
    admin_client.post(CHANGELIST, {"action": "reembed", "_selected_action": chosen})
    assert Image.objects.filter(status="pending", embedding__isnull=True).count() == 3


def test_reindex_now_runs_the_pipeline_inline(admin_client, indexed_gallery, upload):
    new, _ = upload(300)
    response = admin_client.post(CHANGELIST, {"action": "reindex_now", "_selected_action": [str(new.pk)]}, follow=True)
    assert "published index" in response.content.decode()
    assert IndexVersion.objects.get(is_current=True).item_count == 21
    assert Image.objects.get(pk=new.pk).status == "indexed"


def test_deleting_removes_files(admin_client, indexed_gallery, media, django_capture_on_commit_callbacks):
    image = indexed_gallery[0]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"{CHANGELIST}{image.pk}/delete/", {"post": "yes"})
    assert not Image.objects.filter(pk=image.pk).exists()
    assert image.file.name not in stored_files(media) and image.thumbnail.name not in stored_files(media)


def test_editing_title_and_hidden(admin_client, indexed_gallery):
    image = indexed_gallery[0]
    admin_client.post(f"{CHANGELIST}{image.pk}/change/", {"title": "Renamed", "description": "d", "hidden": "on"})
    image.refresh_from_db()
    assert (image.title, image.description, image.hidden, image.status) == ("Renamed", "d", True, "indexed")


def test_index_versions_are_read_only(admin_client, indexed_gallery):
    version = IndexVersion.objects.get()
    url = f"/admin/gallery/indexversion/{version.pk}/change/"
    assert version.version in admin_client.get("/admin/gallery/indexversion/").content.decode()
    assert admin_client.get("/admin/gallery/indexversion/add/").status_code == 403
    page = admin_client.get(url).content.decode()
    assert version.version in page and 'name="_save"' not in page  # shown, not editable
    # A complete, valid form is refused: a published version is a record, never edited.
    form = {
        "version": version.version, "backend": version.backend, "model": version.model, "dim": version.dim, "item_count": 0,
        "n_trees": version.n_trees, "checksum": version.checksum, "snapshot_at_0": "2026-01-02", "snapshot_at_1": "03:04:05",
        "embedded_count": 0, "embed_seconds": 0, "build_seconds": 0, "is_current": "on",
    }
    assert admin_client.post(url, form).status_code == 403
    assert IndexVersion.objects.get().item_count == 20

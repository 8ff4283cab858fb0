"""Near-duplicates: copies of a photo (resized, re-compressed) are grouped after embedding,
distinct photos are not, and a curator keeps one and hides the others, in the admin and the
API. Real photos, the upload service (perceptual hash), the tiny OpenCLIP model, the database."""

import io

import pytest
from django.contrib.auth.models import Permission, User
from PIL import Image as PILImage
from rest_framework.test import APIClient

from gallery import duplicates, indexing
from gallery.models import DuplicateGroup, Image
from gallery.samples import available_samples
from tests.searching import by_text

pytestmark = pytest.mark.django_db
API = "/api/v1/duplicates"


def photo(name: str, *, width: int = 320, quality: int = 90) -> bytes:
    sample = next(s for s in available_samples() if s.filename.startswith(name))
    picture = PILImage.open(sample.path).convert("RGB")
    picture = picture.resize((width, round(picture.height * width / picture.width)), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture
def copies(upload):
    """A cat photo, a smaller re-compressed copy of it, and two other photos; all embedded."""
    cat, _ = upload(data=photo("chelsea"), title="Cat")
    copy, _ = upload(data=photo("chelsea", width=200, quality=40), title="Cat, small copy")
    coffee, _ = upload(data=photo("coffee"), title="Coffee")
    rocket, _ = upload(data=photo("rocket"), title="Rocket")
    assert indexing.images_embed_pending().embedded == 4
    return cat, copy, coffee, rocket


def members(group):
    return {image.pk for image in group.members.all()}


def user_with(username, *codenames):
    user = User.objects.create_user(username, password=f"pw-{username}-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="gallery", codename__in=codenames))
    return User.objects.get(pk=user.pk)


def api_as(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_uploads_store_a_perceptual_hash(copies):
    cat, copy, coffee, _ = (Image.objects.get(pk=i.pk) for i in copies)
    assert all(len(image.phash) == 16 and int(image.phash, 16) >= 0 for image in (cat, copy, coffee))
    assert cat.sha256 != copy.sha256  # different bytes: the upload's exact dedupe lets the copy in


def test_a_resized_recompressed_copy_is_grouped_and_distinct_photos_are_not(copies):
    cat, copy, coffee, rocket = copies
    group = DuplicateGroup.objects.get()
    assert members(group) == {cat.pk, copy.pk} and not group.resolved
    assert not coffee.duplicate_groups.exists() and not rocket.duplicate_groups.exists()
    # Running the check again (an embed run that is retried) records nothing more.
    assert duplicates.find_near_duplicates([cat.pk, copy.pk, coffee.pk, rocket.pk]) == []
    assert DuplicateGroup.objects.count() == 1 and members(DuplicateGroup.objects.get()) == {cat.pk, copy.pk}


def test_a_later_copy_joins_the_open_group(copies, upload):
    cat, copy, _, _ = copies
    third, _ = upload(data=photo("chelsea", width=260, quality=60), title="Cat, third copy")
    indexing.images_embed_pending()
    assert members(DuplicateGroup.objects.get()) == {cat.pk, copy.pk, third.pk}


def test_without_hashes_only_a_very_close_vector_counts(copies, settings):
    cat, copy, coffee, _ = copies
    Image.objects.update(phash=None)
    DuplicateGroup.objects.all().delete()
    settings.DUPLICATE_COSINE_ALONE = 1.01  # nothing is that close
    assert duplicates.find_near_duplicates([cat.pk, copy.pk, coffee.pk]) == []
    settings.DUPLICATE_COSINE_ALONE = -1  # everything is
    assert [members(g) for g in duplicates.find_near_duplicates([cat.pk])] == [set(Image.objects.values_list("pk", flat=True))]


def test_api_lists_groups_for_curators_and_keep_hides_the_others(copies):
    cat, copy, coffee, _ = copies
    group = DuplicateGroup.objects.get()
    curator, member = user_with("curator", "view_image", "change_image"), user_with("member")
    assert api_as(member).get(f"{API}/").status_code == 403
    assert APIClient().get(f"{API}/").status_code in (401, 403)
    listed = api_as(curator).get(f"{API}/").json()
    assert listed["count"] == 1 and {m["id"] for m in listed["results"][0]["members"]} == {cat.pk, copy.pk}
    assert all(m["thumbnail_url"] for m in listed["results"][0]["members"])

    refused = api_as(member).post(f"{API}/{group.pk}/keep/", {"image": cat.pk}, format="json")
    assert refused.status_code == 403 and not Image.objects.filter(hidden=True).exists()
    wrong = api_as(curator).post(f"{API}/{group.pk}/keep/", {"image": coffee.pk}, format="json")
    assert wrong.status_code == 400 and "not in this group" in wrong.json()["detail"]

    kept = api_as(curator).post(f"{API}/{group.pk}/keep/", {"image": cat.pk}, format="json")
    assert kept.status_code == 200 and kept.json()["hidden"] == 1 and kept.json()["group"]["kept"] == cat.pk
    assert set(Image.objects.filter(hidden=True).values_list("pk", flat=True)) == {copy.pk}
    group.refresh_from_db()
    assert group.resolved and group.kept_id == cat.pk and group.resolved_at is not None
    assert api_as(curator).get(f"{API}/").json()["count"] == 0
    assert api_as(curator).get(f"{API}/?resolved=true").json()["count"] == 1
    # The hidden copy is gone from search; the kept photo stays.
    found = {hit.image.pk for hit in by_text("a cat")}
    assert cat.pk in found and copy.pk not in found


def test_admin_changelist_shows_members_and_keeps_one(client, copies):
    cat, copy, _, _ = copies
    group = DuplicateGroup.objects.get()
    curator = user_with("curator", "view_image", "change_image")
    client.force_login(curator)
    page = client.get("/admin/gallery/duplicategroup/").content.decode()
    assert page.count('style="height:6rem') == 2 and page.count('name="keep"') == 2
    assert Image.objects.get(pk=cat.pk).thumbnail.name in page  # presigned URLs differ per request on S3

    client.force_login(user_with("viewer", "view_image"))
    assert client.get("/admin/gallery/duplicategroup/").status_code == 403
    assert client.post(f"/admin/gallery/duplicategroup/{group.pk}/keep/", {"keep": copy.pk}).status_code == 403
    assert not Image.objects.filter(hidden=True).exists()

    client.force_login(curator)
    response = client.post(f"/admin/gallery/duplicategroup/{group.pk}/keep/", {"keep": copy.pk}, follow=True)
    assert "1 other images hidden" in response.content.decode()
    assert set(Image.objects.filter(hidden=True).values_list("pk", flat=True)) == {cat.pk}
    assert DuplicateGroup.objects.get().resolved


def test_admin_action_keeps_the_oldest_of_each_group(admin_client, copies):
    cat, copy, _, _ = copies
    group = DuplicateGroup.objects.get()
    admin_client.post("/admin/gallery/duplicategroup/", {"action": "keep_oldest", "_selected_action": [str(group.pk)]})
    assert set(Image.objects.filter(hidden=True).values_list("pk", flat=True)) == {copy.pk}


def test_benchmark_harness_runs(monkeypatch):
    """benchmarks/near_duplicates.py keeps working (its figures live in docs/performance.md)."""
    from pathlib import Path

    from benchmarks import near_duplicates

    monkeypatch.setenv("CLIP_MODEL", "tiny-test")
    monkeypatch.setenv("CLIP_PRETRAINED", "random")
    out = near_duplicates.main(["--faces", "0", "--config-dir", str(Path(__file__).parent / "clip_configs")])
    assert "pHash alone" in out and "CLIP alone" in out and "both" in out and "copies of one photo" in out

"""Near-duplicates: copies of a photo (resized, re-compressed, cropped) are grouped after
embedding, distinct photos are not, and a curator keeps one and hides the others, in the admin
and the API. Real photos, the upload service (perceptual hashes), the tiny OpenCLIP model, the
database."""

import io

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from PIL import Image as PILImage
from rest_framework.test import APIClient

from gallery.catalogue.perceptual_hash import perceptual_hashes
from gallery.catalogue.samples import available_samples
from gallery.indexing import duplicates
from gallery.models import DuplicateGroup, Image
from tests.index_run import embed_and_match
from tests.searching import by_text

pytestmark = pytest.mark.django_db
API = "/api/v1/duplicates"


def photo(name: str, *, width: int = 320, quality: int = 90, crop: float = 0.0) -> bytes:
    """A sample photo ``width`` pixels wide as a JPEG, ``crop`` of its width and height cut
    off each side."""
    sample = next(s for s in available_samples() if s.filename.startswith(name))
    picture = PILImage.open(sample.path).convert("RGB")
    picture = picture.resize((width, round(picture.height * width / picture.width)), PILImage.Resampling.LANCZOS)
    w, h = picture.size
    picture = picture.crop((round(w * crop), round(h * crop), w - round(w * crop), h - round(h * crop)))
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
    assert embed_and_match().embedded == 4
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
    assert all(len(image.phash256) == len(image.phash256_centre) == 64 for image in (cat, copy, coffee))
    assert cat.phash256 != cat.phash256_centre != coffee.phash256_centre
    assert cat.sha256 != copy.sha256  # different bytes: the upload's exact dedupe lets the copy in


# What imagehash 4.3.2 (``phash``, hash_size 8 and 16) gave for the sample photos, whole frame
# and middle 90%: rows hashed by it before the numpy pHash replaced it compare as they did.
IMAGEHASH_VALUES = {
    "chelsea": ("b15fe6465121175e", "b1ac5ffee6df46225131214897e25edba410e16552ca376ab8c93d465d07426f",
                "b10d11ffe4ca46367839294c11e61698af31eaa95757c1fba0feb9541dc14a63"),
    "coffee": ("bb8320376c0f3637", "bb2483cc209e37f24cf10fc336bc37cf32c29b273241330e60cf9936333c773c",
               "bf22820d820700b2cce18df02c3f36cb99f6cff3be3033c9ccc398c3766c73cc"),
}


@pytest.mark.parametrize("name", sorted(IMAGEHASH_VALUES))
def test_the_perceptual_hashes_are_imagehash_phashes_bit_for_bit(name):
    sample = next(s for s in available_samples() if s.filename.startswith(name))
    hashes = perceptual_hashes(PILImage.open(sample.path))
    assert (hashes.phash, hashes.phash256, hashes.phash256_centre) == IMAGEHASH_VALUES[name]


def test_a_resized_recompressed_copy_is_grouped_and_distinct_photos_are_not(copies):
    cat, copy, coffee, rocket = copies
    group = DuplicateGroup.objects.get()
    assert members(group) == {cat.pk, copy.pk} and not group.resolved
    assert not coffee.duplicate_groups.exists() and not rocket.duplicate_groups.exists()
    # Running the check again (an embed run that is retried) records nothing more.
    assert duplicates.near_duplicates_find(image_ids=[cat.pk, copy.pk, coffee.pk, rocket.pk]) == []
    assert DuplicateGroup.objects.count() == 1 and members(DuplicateGroup.objects.get()) == {cat.pk, copy.pk}


def test_a_later_copy_joins_the_open_group(copies, upload):
    cat, copy, _, _ = copies
    third, _ = upload(data=photo("chelsea", width=260, quality=60), title="Cat, third copy")
    embed_and_match()
    assert members(DuplicateGroup.objects.get()) == {cat.pk, copy.pk, third.pk}


@pytest.fixture
def cropped_coffee(copies, upload):
    """The coffee photo again with 5% cut off each side: its 64-bit whole-frame hash is 18 of
    64 bits from the original's (more than DUPLICATE_MAX_PHASH_DISTANCE allows)."""
    crop, _ = upload(data=photo("coffee", crop=0.05), title="Coffee, cropped")
    assert embed_and_match().embedded == 1
    return crop


def test_a_cropped_copy_is_grouped_with_its_original_and_not_with_other_photos(copies, cropped_coffee):
    cat, copy, coffee, rocket = copies
    groups = {frozenset(members(group)) for group in DuplicateGroup.objects.all()}
    assert groups == {frozenset({cat.pk, copy.pk}), frozenset({coffee.pk, cropped_coffee.pk})}
    assert not rocket.duplicate_groups.exists()


def test_rows_without_the_256_bit_hashes_fall_back_to_the_64_bit_hash(copies, cropped_coffee):
    cat, copy, coffee, _ = copies
    Image.objects.filter(pk__in=[copy.pk, cropped_coffee.pk]).update(phash256=None, phash256_centre=None)
    DuplicateGroup.objects.all().delete()
    found = duplicates.near_duplicates_find(image_ids=Image.objects.values_list("pk", flat=True))
    # The cat's small copy still agrees on 64 bits; the crop, read as a whole frame, does not.
    assert [members(group) for group in found] == [{cat.pk, copy.pk}]
    assert not coffee.duplicate_groups.exists()


def test_hash_images_fills_in_missing_hashes_and_finds_the_duplicates_they_show(copies, cropped_coffee):
    _, _, coffee, rocket = copies
    uploaded = {image.pk: (image.phash, image.phash256, image.phash256_centre) for image in Image.objects.all()}
    Image.objects.update(phash=None, phash256=None, phash256_centre=None)  # as rows from before the hashes
    Image.objects.filter(pk=rocket.pk).update(phash=uploaded[rocket.pk][0])  # one with the 64-bit hash only
    DuplicateGroup.objects.all().delete()
    out = io.StringIO()
    call_command("hash_images", stdout=out)
    assert "Hashed 5 images; 2 near-duplicate group(s)" in out.getvalue()
    # The same picture as at upload (decoded from the stored original, shrunk the same way).
    assert {image.pk: (image.phash, image.phash256, image.phash256_centre) for image in Image.objects.all()} == uploaded
    assert {coffee.pk, cropped_coffee.pk} in [members(group) for group in DuplicateGroup.objects.all()]
    call_command("hash_images", stdout=out)  # nothing left to do
    assert "Hashed 0 images; 0 near-duplicate" in out.getvalue()


def test_without_hashes_only_a_very_close_vector_counts(copies, settings):
    cat, copy, coffee, _ = copies
    Image.objects.update(phash=None, phash256=None, phash256_centre=None)
    DuplicateGroup.objects.all().delete()
    settings.DUPLICATE_COSINE_ALONE = 1.01  # nothing is that close
    assert duplicates.near_duplicates_find(image_ids=[cat.pk, copy.pk, coffee.pk]) == []
    settings.DUPLICATE_COSINE_ALONE = -1  # everything is
    assert [members(g) for g in duplicates.near_duplicates_find(image_ids=[cat.pk])] == [set(Image.objects.values_list("pk", flat=True))]


def test_api_lists_groups_for_curators_and_keep_hides_the_others(copies):
    cat, copy, coffee, _ = copies
    group = DuplicateGroup.objects.get()
    curator, member = user_with("curator", "view_image", "change_image"), user_with("member")
    assert api_as(member).get(f"{API}/").status_code == 403
    assert APIClient().get(f"{API}/").status_code == 401
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
    out = near_duplicates.main(
        ["--seed", "0", "--faces", "2", "--first-face", "50", "--sweep", "--config-dir", str(Path(__file__).parent / "clip_configs")]
    )
    assert "64-bit pHash alone" in out and "256-bit crop-tolerant pHash alone" in out and "CLIP alone" in out
    assert "before: cosine >= 0.85" in out and "older rows" in out and "service: cosine" in out
    assert "copies of one photo" in out
    assert "Hashing per upload" in out and "random copies, seed 0; LFW faces 50-51" in out and "by largest distance" in out

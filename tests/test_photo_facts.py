"""Dates, camera, lens and place from EXIF: read at upload, shown on the page and the API, read
for older rows by `manage.py read_photo_facts`; crafted or broken EXIF never fails an upload."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from PIL import Image as PILImage
from PIL.TiffImagePlugin import IFDRational
from rest_framework.test import APIClient

from gallery.models import Image
from indexer.photo_facts import PhotoFacts, read_photo_facts
from tests.conftest import as_upload

UTC = dt.timezone.utc


def jpeg(exif=None, *, colour="red", size=(64, 48)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, colour).save(out, "JPEG", **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def camera_exif(*, taken="2024:03:10 14:03:00", offset="+02:00", gps=True) -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D"
    exif[0x0112] = 6
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    sub[0xA434] = "EF 50mm f/1.8"
    if gps:
        position = exif.get_ifd(0x8825)
        position.update({1: "S", 2: (IFDRational(33), IFDRational(51), IFDRational(36)),
                         3: "W", 4: (IFDRational(151), IFDRational(12), IFDRational(36))})
    return exif


# --- the reader, framework-free -----------------------------------------------------------------


def test_a_camera_photo_gives_its_date_with_offset_camera_lens_place_and_orientation():
    facts = read_photo_facts(jpeg(camera_exif()))
    assert facts == PhotoFacts(
        taken_at=dt.datetime(2024, 3, 10, 14, 3, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        taken_at_has_offset=True,
        camera_make="Canon",
        camera_model="Canon EOS 5D",
        lens="EF 50mm f/1.8",
        latitude=-33.86,
        longitude=-151.21,
        orientation=6,
    )


def test_a_date_without_offset_is_local_time_of_the_zone_given():
    zone = dt.timezone(dt.timedelta(hours=-5))
    facts = read_photo_facts(jpeg(camera_exif(offset="")), local_zone=zone)
    assert facts.taken_at == dt.datetime(2024, 3, 10, 14, 3, tzinfo=zone) and not facts.taken_at_has_offset


def crafted(case: str) -> bytes:
    exif = PILImage.Exif()
    sub, gps = exif.get_ifd(0x8769), exif.get_ifd(0x8825)
    if case == "unset clock":
        sub[0x9003] = "0000:00:00 00:00:00"
    elif case == "impossible date":
        sub[0x9003] = "2024:13:45 25:61:00"
    elif case == "far future":
        sub[0x9003] = "9999:12:31 23:59:59"
    elif case == "bad offset":
        sub[0x9003], sub[0x9011] = "2024:03:10 14:03:00", "+99:99"
    elif case == "zero denominator":
        gps.update({1: "N", 2: (IFDRational(1, 0), IFDRational(0), IFDRational(0)), 3: "E", 4: (IFDRational(1), IFDRational(0), IFDRational(0))})
    elif case == "latitude out of range":
        gps.update({1: "N", 2: (IFDRational(95), IFDRational(0), IFDRational(0)), 3: "E", 4: (IFDRational(1), IFDRational(0), IFDRational(0))})
    elif case == "half a position":
        gps.update({1: "N", 2: (IFDRational(45), IFDRational(0), IFDRational(0))})
    elif case == "null island":
        gps.update({1: "N", 2: (IFDRational(0), IFDRational(0), IFDRational(0)), 3: "E", 4: (IFDRational(0), IFDRational(0), IFDRational(0))})
    elif case == "huge and binary text":
        exif[0x010F], exif[0x0110] = "x" * 5000, "\x00\x01\x02"
    elif case == "orientation out of range":
        exif[0x0112] = 99
    elif case == "truncated block":
        return jpeg(b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff\x03\x01garbage")
    elif case == "not a TIFF header":
        return jpeg(b"Exif\x00\x00" + bytes(range(256)) * 4)
    return jpeg(exif)


CRAFTED = ["unset clock", "impossible date", "far future", "zero denominator", "latitude out of range",
           "half a position", "null island", "huge and binary text", "orientation out of range", "truncated block",
           "not a TIFF header"]


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_exif_gives_no_facts_and_no_error(case):
    assert read_photo_facts(crafted(case)) == PhotoFacts()


def test_an_impossible_offset_keeps_the_date_in_local_time():
    facts = read_photo_facts(crafted("bad offset"))
    assert facts.taken_at == dt.datetime(2024, 3, 10, 14, 3, tzinfo=UTC) and not facts.taken_at_has_offset


def test_not_an_image_gives_no_facts():
    assert read_photo_facts(b"not an image at all") == PhotoFacts()


# --- at upload, on the page and the API ---------------------------------------------------------


@pytest.mark.django_db
def test_an_upload_stores_the_date_taken_and_the_page_and_api_show_it(member_client, member, media):
    reply = member_client.post("/api/v1/images/", {"file": as_upload(jpeg(camera_exif()))})
    assert reply.status_code == 201, reply.content
    image = Image.objects.get()
    assert image.taken_at == dt.datetime(2024, 3, 10, 12, 3, tzinfo=UTC)  # 14:03 at UTC+02:00
    assert (image.taken_at_source, image.taken_at_offset) == ("camera", 120)
    assert (image.camera, image.lens, image.exif_orientation) == ("Canon EOS 5D", "EF 50mm f/1.8", 6)
    assert (image.latitude, image.longitude) == (-33.86, -151.21)

    page = member_client.get(image.get_absolute_url()).content.decode()
    assert '2024-03-10 14:03 <span class="text-body-secondary">(UTC+02:00)</span>' in page
    assert '<dd class="col-7" id="image-camera">Canon EOS 5D</dd>' in page
    assert "-33.86000, -151.21000" in page

    api = APIClient()
    api.force_authenticate(member)
    data = api.get(f"/api/v1/images/{image.pk}/").json()
    assert dt.datetime.fromisoformat(data["taken_at"]) == image.taken_at
    assert (data["taken_at_source"], data["taken_at_offset"], data["camera_model"], data["latitude"]) == (
        "camera", 120, "Canon EOS 5D", -33.86)


@pytest.mark.django_db
def test_without_exif_the_upload_time_stands_in_and_the_page_says_so(member_client, media):
    before = timezone.now()
    reply = member_client.post("/api/v1/images/", {"file": as_upload(jpeg(colour="blue"))})
    assert reply.status_code == 201, reply.content
    image = Image.objects.get()
    assert image.taken_at_source == "upload" and before <= image.taken_at <= timezone.now()
    assert (image.camera, image.latitude) == ("", None)
    page = member_client.get(image.get_absolute_url()).content.decode()
    assert "no date in the photo: sorted by its upload time" in page and 'id="image-camera"' not in page


@pytest.mark.django_db
@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_exif_never_fails_an_upload(case, upload, media):
    image, created = upload(data=crafted(case))
    assert created and Image.objects.filter(pk=image.pk, taken_at_source="upload", camera_make="", latitude=None).exists()


# --- older rows ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_read_photo_facts_fills_in_rows_uploaded_before_and_is_resumable(upload, media):
    dated, _ = upload(data=jpeg(camera_exif(offset="", gps=False)))
    plain, _ = upload(data=jpeg(colour="green"))
    long_ago = dt.datetime(2020, 1, 1, tzinfo=UTC)
    # As the migration leaves older rows: the upload time, not read yet.
    Image.objects.update(taken_at_source="", taken_at=long_ago, uploaded_at=long_ago, camera_make="", camera_model="")

    out = io.StringIO()
    call_command("read_photo_facts", stdout=out, stderr=io.StringIO())
    assert "Read 2 images; 1 in the gallery carry the date they were taken." in out.getvalue()
    dated.refresh_from_db()
    plain.refresh_from_db()
    assert (dated.taken_at_source, dated.camera) == ("camera", "Canon EOS 5D")
    assert dated.taken_at == dt.datetime(2024, 3, 10, 14, 3, tzinfo=UTC)  # no offset: the gallery's zone (UTC)
    assert (plain.taken_at_source, plain.taken_at) == ("upload", long_ago)  # its upload time, kept

    out = io.StringIO()
    call_command("read_photo_facts", stdout=out, stderr=io.StringIO())
    assert "Read 0 images" in out.getvalue()

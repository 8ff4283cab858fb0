"""What a photo says about itself in its EXIF block: when it was taken (with the UTC offset when
the camera wrote one), the camera and lens, where (GPS), and how it was held (orientation).

Read from the file's header only (Pillow's ``getexif`` parses the APP1/eXIf block without
decoding a pixel), so it costs well under a millisecond and no memory to speak of. EXIF is written
by thousands of devices and editors, often wrongly, and can be crafted: every field is read on
its own and a malformed one is left out, never raised. ``read_photo_facts`` never fails.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from PIL import Image

# Tags (EXIF 2.32 / TIFF 6). Pillow names some of them in ExifTags, but not all in every release.
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

TEXT_MAX_LENGTH = 100  # camera and lens names are short; a longer one is junk or an attack
_DATE = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")
# Dates before photography or in the far future are a camera's unset clock, not a date.
_EARLIEST, _LATEST = datetime(1826, 1, 1), datetime(2200, 1, 1)


@dataclass(frozen=True)
class PhotoFacts:
    taken_at: datetime | None = None  # aware: with the photo's own offset, or in ``local_zone``
    taken_at_has_offset: bool = False  # the camera wrote its UTC offset
    camera_make: str = ""
    camera_model: str = ""
    lens: str = ""
    latitude: float | None = None  # degrees, WGS 84, north positive
    longitude: float | None = None  # degrees, east positive
    orientation: int | None = None  # EXIF 1-8 (1: as stored; 6: rotate 90 degrees clockwise to view)


def read_photo_facts(data: bytes, *, local_zone: tzinfo = timezone.utc) -> PhotoFacts:
    """The facts ``data``'s EXIF block holds; empty facts when it has none or is not an image.
    A date without an offset is taken as ``local_zone`` time (cameras keep local time)."""
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:
            warnings.simplefilter("ignore")  # Pillow warns of corrupt EXIF; a bad field is dropped below
            exif = image.getexif()
            exif_ifd = _ifd(exif, _EXIF_IFD)
            gps = _ifd(exif, _GPS_IFD)
    except Exception:  # not an image, or a header Pillow cannot parse: no facts, not an error
        return PhotoFacts()
    taken_at, has_offset = _taken_at(exif, exif_ifd, local_zone)
    latitude, longitude = _position(gps)
    make = _text(exif.get(_MAKE))
    lens = _text(exif_ifd.get(_LENS_MODEL))
    lens_make = _text(exif_ifd.get(_LENS_MAKE))
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"[:TEXT_MAX_LENGTH]
    return PhotoFacts(
        taken_at=taken_at,
        taken_at_has_offset=has_offset,
        camera_make=make,
        camera_model=_text(exif.get(_MODEL)),
        lens=lens,
        latitude=latitude,
        longitude=longitude,
        orientation=_orientation(exif.get(_ORIENTATION)),
    )


def _ifd(exif, tag: int) -> dict:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:
        return {}


def _taken_at(exif, exif_ifd: dict, local_zone: tzinfo) -> tuple[datetime | None, bool]:
    """The first readable of: date taken, date digitised, file date; each with its own offset."""
    for date_tag, offset_tag, source in (
        (_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, exif_ifd),
        (_DATETIME_DIGITIZED, _OFFSET_TIME_DIGITIZED, exif_ifd),
        (_DATETIME, _OFFSET_TIME, None),
    ):
        value = (exif if source is None else source).get(date_tag)
        when = _date(value)
        if when is None:
            continue
        offset = _offset(exif_ifd.get(offset_tag))
        if offset is not None:
            return when.replace(tzinfo=offset), True
        return when.replace(tzinfo=local_zone), False
    return None, False


def _date(value) -> datetime | None:
    match = _DATE.match(_text(value, limit=40))
    if not match:
        return None
    try:
        when = datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "2024:13:45 25:61:00", "0000:00:00 00:00:00"
        return None
    return when if _EARLIEST <= when < _LATEST else None


def _offset(value) -> timezone | None:
    match = _OFFSET.fullmatch(_text(value, limit=10))
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) >= 60:  # no place on Earth is further from UTC
        return None
    return timezone(-delta if sign == "-" else delta)


def _position(gps: dict) -> tuple[float | None, float | None]:
    latitude = _degrees(gps.get(_GPS_LAT), _text(gps.get(_GPS_LAT_REF), limit=2), "N", "S", 90)
    longitude = _degrees(gps.get(_GPS_LON), _text(gps.get(_GPS_LON_REF), limit=2), "E", "W", 180)
    if latitude is None or longitude is None:
        return None, None  # half a position is no position
    if latitude == 0 and longitude == 0:  # "Null Island": a receiver without a fix writes zeros
        return None, None
    return latitude, longitude


def _degrees(value, ref: str, positive: str, negative: str, bound: float) -> float | None:
    """EXIF's (degrees, minutes, seconds) rationals as signed decimal degrees, or None."""
    if ref.upper() not in (positive, negative):
        return None
    try:
        degrees, minutes, seconds = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):  # wrong count, a zero denominator, text
        return None
    if not all(math.isfinite(part) and part >= 0 for part in (degrees, minutes, seconds)):
        return None
    if minutes >= 60 or seconds >= 60:
        return None
    total = degrees + minutes / 60 + seconds / 3600
    if total > bound:
        return None
    return round(-total if ref.upper() == negative else total, 7)  # ~1 cm: all a phone knows


def _orientation(value) -> int | None:
    try:
        orientation = int(value)
    except (TypeError, ValueError):
        return None
    return orientation if 1 <= orientation <= 8 else None


def _text(value, *, limit: int = TEXT_MAX_LENGTH) -> str:
    """A printable, trimmed string from an EXIF ASCII value (bytes or str), or ''."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    value = value.split("\x00", 1)[0]  # C strings: anything after the NUL is padding or junk
    value = "".join(char for char in value if char.isprintable()).strip()
    return value if len(value) <= limit else ""


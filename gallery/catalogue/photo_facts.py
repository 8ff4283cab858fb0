"""The dates, camera, lens and place a photo records, stored on its row: read at upload
(:func:`photo_fields`, from the bytes already in memory) and for rows uploaded before this was read
(:func:`images_read_photo_facts`, from the stored originals; ``manage.py read_photo_facts``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.files.storage import default_storage
from django.utils import timezone

from gallery.models import Image
from indexer.photo_facts import read_photo_facts

logger = logging.getLogger(__name__)


def photo_fields(data: bytes) -> dict:
    """The ``Image`` fields the photo's EXIF block fills in; without a date, the upload time
    (now), said so by ``taken_at_source``. Malformed EXIF gives fewer fields, never an error."""
    facts = read_photo_facts(data, local_zone=timezone.get_current_timezone())
    fields = {
        "camera_make": facts.camera_make,
        "camera_model": facts.camera_model,
        "lens": facts.lens,
        "latitude": facts.latitude,
        "longitude": facts.longitude,
        "exif_orientation": facts.orientation,
        "taken_at_offset": None,
    }
    if facts.taken_at is None:
        return fields | {"taken_at": timezone.now(), "taken_at_source": Image.DateSource.UPLOAD}
    if facts.taken_at_has_offset:
        fields["taken_at_offset"] = int(facts.taken_at.utcoffset().total_seconds() // 60)
    return fields | {"taken_at": facts.taken_at, "taken_at_source": Image.DateSource.CAMERA}


def images_read_photo_facts(*, batch_size: int = 200, progress: Callable[[int], None] | None = None) -> int:
    """Read the EXIF block of every row uploaded before dates were read, from its stored original.
    Resumable: a row is done once its ``taken_at_source`` is set. Rows without a date keep
    their upload time. Returns how many rows were read; ``progress(n)`` after each batch."""
    done = 0
    last_pk = 0
    while True:
        # A keyset loop: each batch seeks past the last primary key rather than re-scanning.
        batch = list(
            Image.objects.filter(taken_at_source=Image.DateSource.UNREAD, pk__gt=last_pk)
            .order_by("pk")
            .only("pk", "file", "uploaded_at")[:batch_size]
        )
        if not batch:
            return done
        for image in batch:
            fields = _stored_photo_fields(image)
            Image.objects.filter(pk=image.pk).update(**fields)
        done += len(batch)
        last_pk = batch[-1].pk
        if progress:
            progress(len(batch))


def _stored_photo_fields(image: Image) -> dict:
    """Fields from the stored original; a missing or unreadable file keeps the upload time."""
    try:
        with default_storage.open(image.file.name) as file:
            data = file.read()  # whole: a TIFF's EXIF block may sit anywhere in the file
    except Exception as exc:  # OSError locally, botocore's errors on object storage
        logger.warning("image %s: its original could not be read for its date (%s)", image.pk, exc)
        data = b""
    fields = photo_fields(data)
    if fields["taken_at_source"] == Image.DateSource.UPLOAD:
        fields["taken_at"] = image.uploaded_at
    return fields

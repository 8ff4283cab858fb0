"""Services that add, change and remove images. Every way in (web form, API, admin, the
import command) goes through these, so validation and deduplication happen in one place."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import PurePath
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from gallery.models import Image
from indexer.images import ImageRejected, inspect_image, make_thumbnail, open_rgb

logger = logging.getLogger(__name__)


class UploadRejected(ValueError):
    """Nothing was stored. The message is meant for the person who uploaded."""


class StorageUnavailable(RuntimeError):
    """The storage refused or could not be reached; nothing was saved. Safe to show."""


def image_create(
    *, file: BinaryIO, filename: str = "", title: str = "", description: str = ""
) -> tuple[Image, bool]:
    """Store an upload as a pending image. Returns ``(image, created)``: the same bytes
    uploaded again return the existing image with ``created=False``."""
    filename = filename or PurePath(getattr(file, "name", "") or "").name
    data = read_upload(file)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(sha256=sha256).first()
    if existing:
        return existing, False
    info = inspect_upload(data)
    thumbnail = make_thumbnail(open_rgb(data))

    stored: list[str] = []
    try:
        try:
            stored.append(default_storage.save(f"originals/{sha256[:2]}/{sha256}.{info.extension}", ContentFile(data)))
            stored.append(default_storage.save(f"thumbnails/{sha256[:2]}/{sha256}.jpg", ContentFile(thumbnail)))
        except Exception as exc:  # OSError locally; botocore's errors for object storage
            logger.error("storage failed while saving an upload: %s", exc)
            raise StorageUnavailable("The photo could not be stored right now, so nothing was saved; please try again later.") from exc
        with transaction.atomic():
            image = Image.objects.create(
                file=stored[0],
                thumbnail=stored[1],
                sha256=sha256,
                title=(title or _title_from_filename(filename))[:200],
                description=description,
                width=info.width,
                height=info.height,
                size_bytes=len(data),
            )
    except IntegrityError:
        # The same bytes arrived twice at once and the other upload won.
        _delete_files(stored)
        return Image.objects.get(sha256=sha256), False
    except BaseException:
        _delete_files(stored)  # never leave a file without its row
        raise
    logger.debug("stored image %s (%s, %dx%d)", image.pk, filename or "upload", info.width, info.height)
    return image, True


def validate_upload(*, file: BinaryIO) -> None:
    """Raise :class:`UploadRejected` unless ``file`` would be accepted. Stores nothing."""
    inspect_upload(read_upload(file))


def image_update(
    *, image: Image, title: str | None = None, description: str | None = None, hidden: bool | None = None
) -> Image:
    changes = {"title": title[:200] if title is not None else None, "description": description, "hidden": hidden}
    changes = {field: value for field, value in changes.items() if value is not None}
    for field, value in changes.items():
        setattr(image, field, value)
    image.save(update_fields=list(changes))
    return image


def images_set_hidden(*, images, hidden: bool) -> int:
    """Hidden images stay in the index but are dropped from results at query time."""
    return images.update(hidden=hidden)


def images_reembed(*, images) -> int:
    """Queue images to be embedded again by the next index run."""
    return images.update(status=Image.Status.PENDING, error="", embedding=None, embedding_model="", embedded_at=None)


def image_delete(*, image: Image) -> None:
    """Delete the row, then its files once the deletion is committed. Search drops the id at
    query time, so it disappears from results before the next index build."""
    names = [image.file.name, image.thumbnail.name]
    with transaction.atomic():
        image.delete()
        transaction.on_commit(lambda: _delete_files(names))


def read_upload(file: BinaryIO) -> bytes:
    """The whole upload, refused when empty or over UPLOAD_MAX_BYTES."""
    limit = settings.UPLOAD_MAX_BYTES
    size = getattr(file, "size", None)
    if size is not None and size > limit:
        raise UploadRejected(f"The file is too large ({size / 1e6:.1f} MB); the limit is {limit / 1e6:.0f} MB.")
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read(limit + 1)
    if len(data) > limit:
        raise UploadRejected(f"The file is too large; the limit is {limit / 1e6:.0f} MB.")
    if not data:
        raise UploadRejected("The file is empty.")
    return data


def inspect_upload(data: bytes):
    """What the image is, or :class:`UploadRejected` saying why it is refused."""
    try:
        return inspect_image(data, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImageRejected as exc:
        raise UploadRejected(str(exc)) from None


def _title_from_filename(filename: str) -> str:
    stem = PurePath(filename).stem
    return re.sub(r"[_\-.]+", " ", stem).strip()


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # the row is already gone; an orphan file is only wasted space
            logger.exception("could not delete %s from storage", name)

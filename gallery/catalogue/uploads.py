"""The upload service. Every way in (web form, API, admin, the import command) goes through
:func:`image_create`, so validation, deduplication and storage happen in one place."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from pathlib import PurePath
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from gallery.catalogue import keywords
from gallery.catalogue.perceptual_hash import perceptual_hashes
from gallery.catalogue.photo_facts import photo_fields
from gallery.catalogue.signals import images_added
from gallery.catalogue.tags import tag_names_parse, tags_set
from gallery.errors import StorageUnavailable, UploadRejected
from gallery.models import Image
from indexer.images import ImageRejected, make_thumbnail, prepare_image

logger = logging.getLogger(__name__)


def image_create(
    *, file: BinaryIO, filename: str = "", title: str = "", description: str = "", tags: str | list[str] = ""
) -> tuple[Image, bool]:
    """Store an upload as a pending image. Returns ``(image, created)``: the same bytes
    uploaded again return the existing image with ``created=False`` (and its tags unchanged:
    after the upload only curators change tags)."""
    tag_names = tag_names_parse(tags)  # refused before anything is stored
    filename = filename or PurePath(getattr(file, "name", "") or "").name
    if len(description) > Image.DESCRIPTION_MAX_LENGTH:
        raise UploadRejected(f"The description is too long (at most {Image.DESCRIPTION_MAX_LENGTH} characters).")
    data = read_upload(file)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(sha256=sha256).first()
    if existing:
        return existing, False
    info, picture = decode_upload(data)
    thumbnail = make_thumbnail(picture, in_place=True)
    hashes = perceptual_hashes(picture)  # from the thumbnail-sized picture: the hashes read 64x64 pixels
    del picture
    facts = photo_fields(data)  # the header only: date taken, camera, place

    # Each upload writes names of its own: two uploads of the same bytes at once never write
    # (or, for the one that loses the insert, delete) the same object; S3 has no exclusive create.
    unique = f"{sha256[:2]}/{sha256}-{secrets.token_hex(4)}"
    stored: list[str] = []
    try:
        try:
            stored.append(default_storage.save(f"originals/{unique}.{info.extension}", ContentFile(data)))
            stored.append(default_storage.save(f"thumbnails/{unique}.jpg", ContentFile(thumbnail)))
        except Exception as exc:  # OSError locally; botocore's errors for object storage
            logger.error("storage failed while saving an upload: %s", exc)
            raise StorageUnavailable("The photo could not be stored right now, so nothing was saved; please try again later.") from exc
        with transaction.atomic():
            image = Image.objects.create(
                file=stored[0],
                thumbnail=stored[1],
                sha256=sha256,
                title=(title or _title_from_filename(filename))[: Image.TITLE_MAX_LENGTH],
                description=description,
                width=info.width,
                height=info.height,
                size_bytes=len(data),
                phash=hashes.phash,
                phash256=hashes.phash256,
                phash256_centre=hashes.phash256_centre,
                **facts,
            )
            if tag_names:
                tags_set(image=image, names=tag_names)  # also writes the full-text row
            else:
                keywords.images_reindex([image.pk])
            # The orchestrator hears of it once committed (its DAG run must see the row); never fails the upload.
            transaction.on_commit(lambda: images_added.send(sender=Image), robust=True)
    except IntegrityError:
        # The same bytes arrived twice at once and the other upload won: its files stay.
        delete_files(stored)
        return Image.objects.get(sha256=sha256), False
    except BaseException:
        delete_files(stored)  # never leave a file without its row
        raise
    logger.debug("stored image %s (%s, %dx%d)", image.pk, filename or "upload", info.width, info.height)
    return image, True


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


def decode_upload(data: bytes, *, min_size: int | None = None):
    """``(info, upright RGB image)`` decoded once and small, or :class:`UploadRejected` saying
    why the file is refused. ``min_size`` is the shorter side the caller needs."""
    try:
        kwargs = {"thumbnail_size": min_size} if min_size else {}
        return prepare_image(
            data,
            max_pixels=settings.UPLOAD_MAX_PIXELS,
            max_full_decode_pixels=settings.UPLOAD_MAX_FULL_DECODE_PIXELS,
            **kwargs,
        )
    except ImageRejected as exc:
        raise UploadRejected(str(exc)) from None


def _title_from_filename(filename: str) -> str:
    stem = PurePath(filename).stem
    return re.sub(r"[_\-.]+", " ", stem).strip()


def delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # the row is already gone; an orphan file is only wasted space
            logger.exception("could not delete %s from storage", name)


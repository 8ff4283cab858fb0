"""Curation services: edit, hide, unhide, re-embed and delete images. Pages, the API and the
admin all call these (after asking ``gallery.catalogue.access`` whether the user may)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from gallery.catalogue import keywords
from gallery.catalogue.signals import images_deleted, images_visibility_changing
from gallery.catalogue.tags import tag_names_parse, tags_set
from gallery.catalogue.uploads import delete_files
from gallery.errors import InvalidInput
from gallery.models import Image


def image_update(
    *,
    image: Image,
    title: str | None = None,
    description: str | None = None,
    hidden: bool | None = None,
    tags: str | list[str] | None = None,
) -> Image:
    """Change what is given (``None`` leaves a field as it is; ``tags`` replaces all tags)."""
    if description is not None and len(description) > Image.DESCRIPTION_MAX_LENGTH:
        raise InvalidInput(f"The description is too long (at most {Image.DESCRIPTION_MAX_LENGTH} characters).")
    tag_names = tag_names_parse(tags) if tags is not None else None  # refused before anything changes
    changes = {
        "title": title[: Image.TITLE_MAX_LENGTH] if title is not None else None,
        "description": description,
    }
    changes = {field: value for field, value in changes.items() if value is not None}
    for field, value in changes.items():
        setattr(image, field, value)
    if changes:
        with transaction.atomic():
            image.save(update_fields=list(changes))
            keywords.images_reindex([image.pk])
    if tag_names is not None:
        tags_set(image=image, names=tag_names)
    if hidden is not None and hidden != image.hidden:
        images_set_hidden(images=Image.objects.filter(pk=image.pk), hidden=hidden)
        image.hidden = hidden
    return image


def images_set_hidden(*, images: QuerySet[Image], hidden: bool) -> int:
    """Hidden images stay in the index but are dropped from results at query time: by the
    database (always), and inside a live engine (Milvus), which hears of it through
    ``images_visibility_changing`` and changes its ``visible`` field once this commits."""
    with transaction.atomic():  # a live engine is told once this commits, never before
        images_visibility_changing.send(sender=Image, images=images, visible=not hidden)
        return images.update(hidden=hidden)


def images_reembed(*, images: QuerySet[Image]) -> int:
    """Queue images to be embedded again by the next index run."""
    return images.update(status=Image.Status.PENDING, error="", embedding=None, embedding_model="", embedded_at=None)


def image_delete(*, image: Image) -> None:
    """Delete the row, then its files once the deletion is committed. Search drops the id at
    query time, so it disappears from results before the next index build; Milvus removes
    it at once."""
    names, pk = [image.file.name, image.thumbnail.name], image.pk
    with transaction.atomic():
        keywords.images_forget([pk])
        image.delete()
        images_deleted.send(sender=Image, ids=[pk])
        transaction.on_commit(lambda: delete_files(names))

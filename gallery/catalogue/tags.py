"""Tag services. Members tag their photos at upload (``gallery.catalogue.uploads.image_create``); after
that only curators change tags (pages, API and admin ask ``gallery.catalogue.access.can_curate`` first).

Names are normalised (lower case, single spaces) and each has a slug; two names with one slug
("new york", "new-york") are one tag. Every change rewrites ``Image.tag_names`` and the
full-text rows of the images touched (``gallery.catalogue.keywords``), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.text import slugify

from gallery.catalogue import keywords
from gallery.errors import InvalidInput
from gallery.models import TAG_NAMES_SEPARATOR, Image, Tag

MAX_TAGS_PER_IMAGE = 30


def tag_names_parse(value: str | Iterable[str] | None) -> list[str]:
    """Names from a comma-separated text or a list, normalised, without repeats, in order."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [part for item in value for part in str(item).split(",")]
    names = list(dict.fromkeys(name for name in (tag_name_clean(part) for part in parts) if name))
    if len(names) > MAX_TAGS_PER_IMAGE:
        raise InvalidInput(f"Too many tags ({len(names)}; at most {MAX_TAGS_PER_IMAGE} per image).")
    return names


def tag_name_clean(name: str) -> str:
    """One normalised name, "" for blank, :class:`InvalidInput` when it cannot be a tag."""
    name = " ".join(str(name).split()).lower()
    if not name:
        return ""
    if len(name) > Tag.NAME_MAX_LENGTH:
        raise InvalidInput(f"The tag “{name[:20]}…” is too long (at most {Tag.NAME_MAX_LENGTH} characters).")
    if not slugify(name, allow_unicode=True):
        raise InvalidInput(f"“{name}” is not a tag: use letters or digits.")
    if "," in name:  # commas separate names in lists and forms, and in Image.tag_names
        raise InvalidInput(f"“{name}” is not one tag: a tag name cannot hold a comma.")
    return name


def tags_get_or_create(names: Iterable[str]) -> list[Tag]:
    """The tags of these names, created where missing; names sharing a slug give one tag."""
    tags: list[Tag] = []
    for name in names:
        slug = slugify(name, allow_unicode=True)
        tag = Tag.objects.filter(slug=slug).first()
        if tag is None:
            try:
                with transaction.atomic():
                    tag = Tag.objects.create(name=name, slug=slug)
            except IntegrityError:  # created by someone else just now
                tag = Tag.objects.get(slug=slug)
        if tag not in tags:
            tags.append(tag)
    return tags


def tag_lookup(value: str) -> Tag | None:
    """The tag a filter (``?tag=``) names, by name or slug."""
    try:
        name = tag_name_clean(value)
    except InvalidInput:
        return None
    return Tag.objects.filter(name=name).first() or Tag.objects.filter(slug=slugify(name, allow_unicode=True)).first()


@transaction.atomic
def tags_set(*, image: Image, names: str | Iterable[str]) -> list[Tag]:
    """Give ``image`` exactly these tags."""
    tags = tags_get_or_create(tag_names_parse(names))
    image.tags.set(tags)
    images_tags_refresh([image.pk])
    image.tag_names = _joined(tag.name for tag in tags)
    return tags


@transaction.atomic
def images_tag(*, images: QuerySet[Image], name: str) -> int:
    """Add one tag to many images (admin bulk action); returns how many images."""
    (tag,) = tags_get_or_create(tag_names_parse([name])[:1] or _required())
    ids = list(images.values_list("pk", flat=True))
    tag.images.add(*ids)
    images_tags_refresh(ids)
    return len(ids)


@transaction.atomic
def images_untag(*, images: QuerySet[Image], name: str) -> int:
    """Remove one tag from many images; returns how many images had it."""
    tag = tag_lookup(name)
    if tag is None:
        return 0
    ids = list(images.filter(tags=tag).values_list("pk", flat=True))
    tag.images.remove(*ids)
    images_tags_refresh(ids)
    return len(ids)


@transaction.atomic
def tag_rename(*, tag: Tag, name: str) -> Tag:
    name = tag_name_clean(name) or _required()
    tag.name, tag.slug = name, slugify(name, allow_unicode=True)
    try:
        with transaction.atomic():
            tag.save()
    except IntegrityError:
        raise InvalidInput(f"There is already a tag “{name}”.") from None
    images_tags_refresh(tag.images.values_list("pk", flat=True))
    return tag


@transaction.atomic
def tag_delete(*, tag: Tag) -> None:
    ids = list(tag.images.values_list("pk", flat=True))
    tag.delete()
    images_tags_refresh(ids)


def images_tags_refresh(ids: Iterable[int]) -> None:
    """Rewrite ``tag_names`` and the full-text rows of these images from their tags."""
    ids = list(ids)
    if not ids:
        return
    names: dict[int, list[str]] = {pk: [] for pk in ids}
    for pk, name in Image.tags.through.objects.filter(image_id__in=ids).values_list("image_id", "tag__name"):
        names[pk].append(name)
    images = [Image(pk=pk, tag_names=_joined(found)) for pk, found in names.items()]
    Image.objects.bulk_update(images, ["tag_names"], batch_size=500)
    keywords.images_reindex(ids)


def _joined(names: Iterable[str]) -> str:
    return TAG_NAMES_SEPARATOR.join(sorted(names))


def _required():
    raise InvalidInput("Give a tag name.")

"""Who may do what: the one access policy that pages, the API and media serving all ask.

- Visitors read and search when the gallery is public (the default); with
  ``GALLERY_REQUIRE_LOGIN`` only signed-in members do, on pages, API and media alike.
- Signed-in members upload.
- Curators are users with Django's model permissions: ``gallery.change_image`` edits, hides,
  unhides and sees hidden images; ``gallery.delete_image`` deletes; ``gallery.reindex_image``
  starts an index run. Superusers have them all; give curators a group with them.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from gallery.models import Image

CHANGE = "gallery.change_image"
DELETE = "gallery.delete_image"
REINDEX = "gallery.reindex_image"


def can_view(user) -> bool:
    """Read and search: pages, API and media."""
    return not settings.GALLERY_REQUIRE_LOGIN or bool(user and user.is_authenticated)


def can_upload(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def can_curate(user) -> bool:
    """Edit, hide and unhide images, and see hidden ones and why an image failed."""
    return bool(user and user.has_perm(CHANGE))


def can_delete(user) -> bool:
    return bool(user and user.has_perm(DELETE))


def can_reindex(user) -> bool:
    return bool(user and user.has_perm(REINDEX))


def can_see(user, image: Image) -> bool:
    """Whether ``user`` may open ``image`` (and learn its title, description and state)."""
    return can_view(user) and (not image.hidden or can_curate(user))


def viewable_images(user) -> QuerySet[Image]:
    """The images ``user`` may open: hidden ones only for curators."""
    if not can_view(user):
        return Image.objects.none()
    images = Image.objects.defer("embedding")
    return images if can_curate(user) else images.visible()

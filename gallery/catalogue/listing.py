"""What the gallery grid lists before its filters (search lives in ``gallery.search``)."""

from __future__ import annotations

from django.db.models import QuerySet

from gallery.catalogue import access
from gallery.catalogue.filters import shown_unless_asked
from gallery.models import Image


def gallery_images(user, params) -> QuerySet[Image]:
    """What the gallery grid shows before its filters: every image ``user`` may see that nobody
    hid, or, when a curator asks about ``hidden``, hidden ones too (the filters and order are
    the API image list's: ``gallery.catalogue.filters``, ``gallery.api.pagination``)."""
    return shown_unless_asked(access.viewable_images(user), params, curator=access.can_curate(user))

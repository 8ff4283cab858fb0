"""The gallery's admin, one module per context; importing them registers their ModelAdmins."""

from gallery.admin import catalogue, indexing, search  # noqa: F401

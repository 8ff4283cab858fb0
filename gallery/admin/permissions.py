"""What the admin shows to curators only, for every context's admin."""

from gallery.catalogue import access


class CuratorsOnly:
    """Curators see and change these, whatever model permissions exist for the rows themselves."""

    def has_view_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_add_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_change_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_delete_permission(self, request, obj=None):
        return access.can_curate(request.user)


def without_error_unless_curator(request, names):
    """Why an image failed to embed or be read (paths, exceptions) is for curators only, as on the pages."""
    return list(names) if access.can_curate(request.user) else [name for name in names if name != "error"]

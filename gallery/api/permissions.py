"""DRF's side of the access policy: each class asks ``gallery.catalogue.access``."""

from rest_framework.permissions import BasePermission

from gallery.catalogue import access


class CanView(BasePermission):
    def has_permission(self, request, view):
        return access.can_view(request.user)


class CanUpload(BasePermission):
    def has_permission(self, request, view):
        return access.can_upload(request.user)


class CanCurate(BasePermission):
    def has_permission(self, request, view):
        return access.can_curate(request.user)


class CanDelete(BasePermission):
    def has_permission(self, request, view):
        return access.can_delete(request.user)


class CanReindex(BasePermission):
    def has_permission(self, request, view):
        return access.can_reindex(request.user)

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle


class CanRead(BasePermission):
    """Reading and searching are public unless API_REQUIRE_LOGIN is set."""

    def has_permission(self, request, view):
        return not settings.API_REQUIRE_LOGIN or bool(request.user and request.user.is_authenticated)


class _SettingsRateThrottle(SimpleRateThrottle):
    """Per user (or per address when anonymous), at a rate read from settings on each request."""

    setting = ""

    def get_rate(self):
        return getattr(settings, self.setting)

    def get_cache_key(self, request, view):
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SearchThrottle(_SettingsRateThrottle):
    scope, setting = "search", "API_SEARCH_RATE"


class UploadThrottle(_SettingsRateThrottle):
    scope, setting = "upload", "API_UPLOAD_RATE"

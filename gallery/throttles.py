"""Rate limits shared by the pages and the API (DRF's throttles work on Django requests too)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class _SettingsRateThrottle(SimpleRateThrottle):
    """Per user (or per address when anonymous), at a rate read from settings on each request."""

    setting = ""

    def get_rate(self):
        return getattr(settings, self.setting)

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        ident = user.pk if user and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SearchThrottle(_SettingsRateThrottle):
    scope, setting = "search", "API_SEARCH_RATE"


class UploadThrottle(_SettingsRateThrottle):
    scope, setting = "upload", "API_UPLOAD_RATE"


class SavedSearchThrottle(_SettingsRateThrottle):
    scope, setting = "saved-search", "API_SAVED_SEARCH_RATE"


class SignInThrottle(_SettingsRateThrottle):
    """Password guesses (token endpoint and sign-in page), per address: a signed-in user
    asking for a token is still counted by address, since a stolen session proves nothing."""

    scope, setting = "sign-in", "API_SIGN_IN_RATE"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def throttled(request, *throttles: type[SimpleRateThrottle]) -> float | None:
    """``None`` when ``request`` may go on, else seconds to wait (for pages; DRF views use
    ``throttle_classes``)."""
    for throttle_class in throttles:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):
            return throttle.wait() or 1.0
    return None

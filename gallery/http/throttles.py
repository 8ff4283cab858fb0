"""Rate limits shared by the pages and the API (DRF's throttles work on Django requests too),
and the one sign-in limit that every way in (sign-in page, admin, token endpoint) shares.

Who is asking: the signed-in user, else the client's address, which is ``REMOTE_ADDR`` unless
``GALLERY_TRUSTED_PROXIES`` says how many proxies in front of the app append to
``X-Forwarded-For`` (then the address the outermost trusted proxy saw). A header the client sent
itself is never believed: it would let every request pick a new identity.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle


def client_address(request) -> str:
    """The address to count a request against (README, "Security": trusted proxies)."""
    meta = request.META
    remote = meta.get("REMOTE_ADDR", "")
    proxies = settings.GALLERY_TRUSTED_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    # Each trusted proxy appends the address it saw: the last `proxies` entries are theirs to
    # vouch for, and the one furthest left of those is the client (anything before it the
    # client may have made up).
    addresses = [part.strip() for part in forwarded.split(",") if part.strip()]
    return addresses[-min(proxies, len(addresses))] if addresses else remote


class _SettingsRateThrottle(SimpleRateThrottle):
    """Per user (or per address when anonymous), at a rate read from settings on each request."""

    setting = ""

    def get_rate(self):
        return getattr(settings, self.setting)

    def get_ident(self, request):
        return client_address(request)

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        ident = user.pk if user and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SearchThrottle(_SettingsRateThrottle):
    scope, setting = "search", "API_SEARCH_RATE"


class UploadThrottle(_SettingsRateThrottle):
    """One count per file: a page upload of 50 photos costs 50, as 50 API uploads do."""

    scope, setting = "upload", "API_UPLOAD_RATE"


class SavedSearchThrottle(_SettingsRateThrottle):
    scope, setting = "saved-search", "API_SAVED_SEARCH_RATE"


def throttled(request, *throttles: type[SimpleRateThrottle]) -> float | None:
    """``None`` when ``request`` may go on (and counts it), else seconds to wait (for pages;
    DRF views use ``throttle_classes``)."""
    for throttle_class in throttles:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):
            return throttle.wait() or 1.0
    return None


# --- Sign-in: one limit for every way in --------------------------------------------------------


class SignInThrottled(Exception):
    """Too many failed sign-ins for this account or from this address. Raised from inside
    ``authenticate()``, so the sign-in page, the admin's and the token endpoint all stop at the
    same point; ``gallery.web.middleware`` (pages) and ``gallery.api.exceptions`` (API) answer 429."""

    message = "Too many failed sign-in attempts; please wait a moment before trying again."

    def __init__(self, wait: float) -> None:
        super().__init__(self.message)
        self.wait = wait


def _sign_in_counters(request, username: str | None, now: float, duration: int) -> list[tuple[str, float]]:
    """The counter key of each identity (the address, and the account when named) and when its
    window began. A window starts at an identity's first attempt and lasts ``duration``: the
    limit is then exactly N attempts in any window that starts with one, wherever the clock's
    minute falls (fixed clock windows let 2N guesses through across a boundary)."""
    counters = []
    idents = [("address", client_address(request))] + ([("account", username.strip().lower())] if username else [])
    for kind, ident in idents:
        # Hashed: a username (or a forwarded address) may hold any character at any length, and
        # cache keys may not (memcached: 250 ASCII characters, no spaces or control characters).
        key = f"sign-in:{kind}:{hashlib.sha256(ident.encode()).hexdigest()}"
        cache.add(f"{key}:since", now, duration)  # atomic: of attempts at the same moment, one starts it
        since = cache.get(f"{key}:since", now)
        # The counter is named after its window, so a new window never inherits an old count.
        counters.append((f"{key}:{since!r}", since))
    return counters


def sign_in_attempt(request, username: str | None) -> tuple[list[str], float | None]:
    """Count one attempt against the account and the address, before the password is checked,
    with the cache's atomic increment: guesses sent at the same moment are all counted (a
    read-then-write count lets each of them pass). Returns the counters (to give the attempt
    back if it succeeds) and the seconds to wait when either is over API_SIGN_IN_RATE in its
    window, else ``None``."""
    allowed, duration = SimpleRateThrottle.parse_rate(None, settings.API_SIGN_IN_RATE)
    now = time.time()
    keys, wait = [], None
    for key, since in _sign_in_counters(request, username, now, duration):
        keys.append(key)
        cache.add(key, 0, duration)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: this attempt starts the count
            cache.set(key, count := 1, duration)
        if count > allowed:
            wait = max(wait or 0.0, since + duration - now, 1.0)
    return keys, wait


def sign_in_succeeded(keys: list[str]) -> None:
    """A right password does not use up the limit (only failures should lock anyone out)."""
    for key in keys:
        try:
            cache.decr(key)
        except ValueError:
            pass


class ThrottledModelBackend(ModelBackend):
    """Django's password check behind the sign-in limit: every password sign-in (the sign-in
    page, ``/admin/login/``, ``POST /api/v1/auth/token/``) calls ``authenticate()``, so all of
    them count attempts together, per account and per address, and refuse before checking a
    password once either is over ``API_SIGN_IN_RATE`` (a right password gives its attempt back)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:  # `manage.py` and code without a request: nobody to throttle
            return super().authenticate(request, username=username, password=password, **kwargs)
        if username is None:
            from django.contrib.auth import get_user_model

            username = kwargs.get(get_user_model().USERNAME_FIELD)
        keys, wait = sign_in_attempt(request, username)
        if wait is not None:
            raise SignInThrottled(wait)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            sign_in_succeeded(keys)
        return user

"""Two answers given before (or instead of) a view: a body too large to read, and a sign-in
refused by the sign-in limit (``gallery.http.throttles``)."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render

from gallery.http.request_limits import BODY_TOO_LARGE, body_limit, too_large_message
from gallery.http.throttles import SignInThrottled


def _error(request, message: str, status: int):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return render(request, "gallery/error.html", {"error": message}, status=status)


class RequestBodyLimitMiddleware:
    """413 for a body whose Content-Length is over its limit, before anything reads it (the CSRF
    check reads ``request.POST`` in ``process_view``, after every middleware's ``__call__``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = body_limit(request)
        # Under ASGI a body without a length is counted as it streams in (LimitedASGIHandler).
        if length > limit or getattr(request, "scope", {}).get(BODY_TOO_LARGE):
            response = _error(request, too_large_message(limit), 413)
            response["Connection"] = "close"  # the body stays unread
            return response
        return self.get_response(request)


class SignInThrottleMiddleware:
    """The sign-in page and ``/admin/login/`` call ``authenticate()`` inside Django's own views;
    a refusal raised there becomes a 429 page here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, SignInThrottled):
            return None
        response = _error(request, exception.message, 429)
        response["Retry-After"] = str(int(exception.wait) + 1)
        return response

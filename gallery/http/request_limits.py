"""How large a request body may be, decided before it is read.

Django writes a multipart file to a temporary file as it arrives and only then does the upload
service see its size: a 400 MB "search by image" would be on disk before its 400. So bodies are
refused up front by their ``Content-Length`` (:class:`gallery.web.middleware.RequestBodyLimitMiddleware`,
before the CSRF check or any view reads ``request.POST``), and while streaming by
:class:`StreamingLimitHandler` (first of ``FILE_UPLOAD_HANDLERS``), which stops a file part as
soon as it passes ``UPLOAD_MAX_BYTES`` and a body as soon as it passes its limit, whatever the
header said.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.core.handlers.asgi import ASGIHandler
from django.urls import reverse

from gallery.catalogue import access

# Room for the form fields beside the files (titles, descriptions, tags, multipart headers).
FORM_ALLOWANCE = 1024 * 1024


def body_limit(request) -> int:
    """The largest body ``request`` may send: one file, except a member's on the upload page
    (several); anyone else's post there is refused before it is read, not after 2.5 GB."""
    # The user is looked up (session, user: two queries) only where the answer depends on it.
    return body_limit_for_path(request.path, may_upload=lambda: access.can_upload(getattr(request, "user", None)))


def body_limit_for_path(path: str, *, may_upload: Callable[[], bool]) -> int:
    files = settings.UPLOAD_MAX_FILES if path == reverse("gallery:upload") and may_upload() else 1
    return files * settings.UPLOAD_MAX_BYTES + FORM_ALLOWANCE


# Set in an ASGI request's scope when its body went past the limit while it streamed in.
BODY_TOO_LARGE = "gallery.body_too_large"


class LimitedASGIHandler(ASGIHandler):
    """Django's ASGI handler reads a whole body into a temporary file before any middleware
    runs, however long (a chunked body has no Content-Length to refuse it by). This one keeps
    at most the path's limit of it, drops the rest as it arrives, and marks the request, which
    :class:`gallery.web.middleware.RequestBodyLimitMiddleware` then answers with a 413."""

    async def handle(self, scope, receive, send):
        if scope.get("type") != "http":
            return await super().handle(scope, receive, send)
        # Before any middleware: who is signed in is unknown yet, but a body without a session
        # cookie cannot be a member's, so only one with it may bring several files.
        cookies = b";".join(value for name, value in scope.get("headers", []) if name.lower() == b"cookie")
        with_session = f"{settings.SESSION_COOKIE_NAME}=".encode() in cookies
        limit, received = body_limit_for_path(scope.get("path", ""), may_upload=lambda: with_session), 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request" and message.get("body"):
                received += len(message["body"])
                if received > limit:
                    scope[BODY_TOO_LARGE] = limit
                    message = {**message, "body": b""}
            return message

        return await super().handle(scope, limited_receive, send)


def too_large_message(limit: int) -> str:
    return (
        f"The request is too large; a photo may be at most {settings.UPLOAD_MAX_BYTES / 1e6:.0f} MB "
        f"(and a request at most {limit / 1e6:.0f} MB)."
    )


class BodyTooLarge(RequestDataTooBig):
    """A body over its limit, found while reading it: a 413 (Django hands it to ``handler400``,
    :func:`gallery.web.views.bad_request`; the API's exception handler answers it too)."""


class StreamingLimitHandler(FileUploadHandler):
    """Counts every byte of every file part as it arrives and stops the upload past the limits."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = settings.UPLOAD_MAX_BYTES + FORM_ALLOWANCE  # the request's own, once it starts
        self.total = self.file_bytes = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.limit = body_limit(self.request)
        self.total = 0
        if content_length and content_length > self.limit:  # the middleware's check, for callers without it
            raise BodyTooLarge(too_large_message(self.limit))

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file_bytes = 0

    def receive_data_chunk(self, raw_data, start):
        self.file_bytes += len(raw_data)
        self.total += len(raw_data)
        if self.file_bytes > settings.UPLOAD_MAX_BYTES or self.total > self.limit:
            raise BodyTooLarge(too_large_message(self.limit))
        return raw_data  # the next handler (memory, then a temporary file) stores it

    def file_complete(self, file_size):
        return None  # the next handler makes the file

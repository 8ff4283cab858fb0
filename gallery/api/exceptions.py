"""The API's half of the one error mapping: a gallery error becomes ``{"detail": ...}`` with
the status ``gallery.errors.http_status`` gives it (the pages render the same status)."""

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from gallery.errors import http_status, public_message
from gallery.http.request_limits import BodyTooLarge
from gallery.http.throttles import SignInThrottled


def exception_handler(exc, context):
    status = http_status(exc)
    if status is not None:
        field = getattr(exc, "field", "")
        message = public_message(exc)
        return Response({field: [message]} if field else {"detail": message}, status=status)
    if isinstance(exc, SignInThrottled):  # raised inside authenticate(): the one sign-in limit
        exc = exceptions.Throttled(wait=exc.wait, detail=exc.message)
    if isinstance(exc, BodyTooLarge):  # found while streaming the body
        return Response({"detail": str(exc)}, status=413)
    return drf_exception_handler(exc, context)

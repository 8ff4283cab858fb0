"""The API's half of the one error mapping: a gallery error becomes ``{"detail": ...}`` with
the status ``gallery.errors.http_status`` gives it (the pages render the same status)."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from gallery.errors import http_status


def exception_handler(exc, context):
    status = http_status(exc)
    if status is not None:
        field = getattr(exc, "field", "")
        return Response({field: [str(exc)]} if field else {"detail": str(exc)}, status=status)
    return drf_exception_handler(exc, context)

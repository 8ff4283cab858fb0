"""The ``Server-Timing`` header (``SERVER_TIMING=true``): how long the app took and, of that, the
text encoder (``encode``), the index query (``index``) and the database's ``execute`` calls
(``db``; rows fetched after the first are not counted there), in milliseconds.

Off by default: it says nothing that a response's latency does not already show, but a product
need not spell out its internals to everyone. Benchmarks switch it on."""

from __future__ import annotations

import time

from django.db import connection

from indexer import timing


class ServerTimingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        with timing.collecting() as timings, connection.execute_wrapper(_timed_query):
            response = self.get_response(request)
        timings["app"] = time.perf_counter() - started
        response["Server-Timing"] = ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in timings.items())
        return response


def _timed_query(execute, sql, params, many, context):
    with timing.timed("db"):
        return execute(sql, params, many, context)

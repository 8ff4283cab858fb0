"""Airflow's REST API (v2, Airflow 3), seen from the gallery.

Two calls: "reindex now" queues a run of the indexing DAG (a curator waits for the answer), and
every new upload *announces* new images: an event for the asset the DAG is scheduled on
(``indexer.dag_names``), so a run starts within seconds instead of on the hour.

Announcing never slows or fails an upload. It happens after the commit, on a background thread,
with a short timeout per request, tried again for a while when Airflow does not answer yet (busy
parsing at start, restarting); uploads that arrive while an event is being posted share the next one
(a burst of 1,000 uploads posts about one event a second, and Airflow coalesces those into a
few runs). When Airflow is down or not configured the event is dropped with one log line, and
the hourly schedule indexes the images anyway.
"""

from __future__ import annotations

import atexit
import base64
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.dispatch import receiver

from gallery.catalogue.signals import images_added
from gallery.errors import AirflowUnavailable
from indexer.dag_names import NEW_UPLOADS_ASSET_URI

logger = logging.getLogger(__name__)

TIMEOUT = 10  # seconds; a curator is waiting on the page
ANNOUNCE_TIMEOUT = 5  # seconds per request, in a background thread: nobody waits, and one thread never piles up
# Seconds one announcement keeps trying an Airflow that does not answer yet (a scheduler that has
# just started keeps a 2-core machine busy for a while); a dropped one waits for the hourly run.
ANNOUNCE_PATIENCE = 20
ANNOUNCE_INTERVAL = 1.0  # seconds between two events from one process: uploads in between share one


def trigger_dag_run() -> str:
    """Queue a run of the indexing DAG; returns its run id."""
    run = _call("POST", f"/api/v2/dags/{settings.AIRFLOW_DAG_ID}/dagRuns", {"logical_date": None}, timeout=TIMEOUT)
    return run["dag_run_id"]


@receiver(images_added, dispatch_uid="announce-new-images")
def _images_added(sender, **kwargs) -> None:
    announce_new_images()


def announce_new_images() -> None:
    """Tell Airflow that new images arrived, without waiting for it. Never raises.

    Call it after the commit (``transaction.on_commit(announce_new_images)``): the DAG run it
    starts must see the new rows."""
    if not settings.AIRFLOW_API_URL:
        _log_not_configured_once()
        return
    _announcer.request()


def asset_event_post(*, timeout: float = ANNOUNCE_TIMEOUT) -> dict:
    """Record one event of the new-uploads asset, now; returns Airflow's event. Raises
    :class:`AirflowUnavailable`. The announcer calls this; so can a script."""
    body = {"asset_id": _asset_id(timeout=timeout), "extra": {"source": "gallery"}}
    try:
        return _call("POST", "/api/v2/assets/events", body, timeout=timeout)
    except AirflowUnavailable as exc:
        if exc.airflow_status != 404:
            raise
    # The asset got another id (Airflow's database was reset): look it up once more.
    _asset_ids.clear()
    body["asset_id"] = _asset_id(timeout=timeout)
    return _call("POST", "/api/v2/assets/events", body, timeout=timeout)


def announcements_flush(timeout: float | None = None) -> bool:
    """Wait until announcements asked for so far were posted (or dropped): by default as long as
    one can take. For tests and for processes about to exit (registered with atexit, so an import
    command's last event goes out)."""
    if timeout is None:  # the last try may start just before the patience runs out
        timeout = ANNOUNCE_PATIENCE + 3 * ANNOUNCE_TIMEOUT + ANNOUNCE_INTERVAL
    return _announcer.flush(timeout)


def _asset_event_post_patiently() -> dict:
    """:func:`asset_event_post`, tried again with growing pauses while the failure may pass, for
    ANNOUNCE_PATIENCE seconds; a refusal is final at once."""
    deadline, pause = time.monotonic() + ANNOUNCE_PATIENCE, 0.5
    while True:
        try:
            return asset_event_post()
        except AirflowUnavailable as exc:
            if not exc.passing or time.monotonic() + pause >= deadline:
                raise
            logger.info("Airflow did not take the announcement yet, trying again in %.1f s: %s", pause, exc)
        time.sleep(pause)
        pause *= 2


class _Announcer:
    """One daemon thread per process posting asset events; requests made while it is busy
    coalesce into one more event."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._wanted = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def request(self) -> None:
        with self._cond:
            self._wanted = True
            # A forked worker (gunicorn) inherits the object but not the thread.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._busy = False
                self._thread = threading.Thread(target=self._run, name="airflow-announcer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                return True
            return self._cond.wait_for(lambda: not self._wanted and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted)
                self._wanted, self._busy = False, True
            try:
                event = _asset_event_post_patiently()
                logger.debug("announced new images to Airflow (asset event %s)", event.get("id"))
            except AirflowUnavailable as exc:
                logger.warning("new images not announced to Airflow; the next scheduled index run takes them: %s", exc)
            except Exception:  # a bug here must not kill the thread for the life of the process
                logger.exception("new images not announced to Airflow")
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            time.sleep(ANNOUNCE_INTERVAL)  # what arrives meanwhile goes out in one event


_announcer = _Announcer()
atexit.register(announcements_flush)

_not_configured_logged = False


def _log_not_configured_once() -> None:
    global _not_configured_logged
    if not _not_configured_logged:
        _not_configured_logged = True
        logger.info("new images are not announced to Airflow (AIRFLOW_API_URL is not set); the next index run takes them")


# Airflow's JWT lives a day by default; one per process, renewed a minute before it expires.
_token_lock = threading.Lock()
_tokens: dict[tuple[str, str], tuple[str, float]] = {}
_asset_ids: dict[str, int] = {}


def _token(*, timeout: float) -> str:
    base, username = settings.AIRFLOW_API_URL.rstrip("/"), settings.AIRFLOW_API_USERNAME
    with _token_lock:
        token, expires = _tokens.get((base, username), ("", 0.0))
        if time.time() < expires - 60:
            return token
        body = {"username": username, "password": settings.AIRFLOW_API_PASSWORD}
        token = _request("POST", f"{base}/auth/token", body, timeout=timeout)["access_token"]
        _tokens[(base, username)] = (token, _expiry(token))
        return token


def _expiry(token: str) -> float:
    """The token's `exp` claim (read, not verified: Airflow verifies it); 5 minutes if unreadable."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return time.time() + 300


def _asset_id(*, timeout: float) -> int:
    base = settings.AIRFLOW_API_URL.rstrip("/")
    if base not in _asset_ids:
        query = urllib.parse.urlencode({"uri_pattern": NEW_UPLOADS_ASSET_URI, "limit": 100})
        found = [a["id"] for a in _call("GET", f"/api/v2/assets?{query}", None, timeout=timeout)["assets"] if a["uri"] == NEW_UPLOADS_ASSET_URI]
        if not found:
            # The DAG processor writes the asset when it first parses the DAG: at start, soon.
            raise AirflowUnavailable(f"Airflow knows no asset {NEW_UPLOADS_ASSET_URI} (is the search_index DAG loaded?)",
                                     passing=True)
        _asset_ids[base] = found[0]
    return _asset_ids[base]


def _call(method: str, path: str, body: dict | None, *, timeout: float) -> dict:
    """One authenticated request; a rejected token (expired early, Airflow's secret changed) is
    renewed once."""
    url = settings.AIRFLOW_API_URL.rstrip("/") + path
    try:
        return _request(method, url, body, token=_token(timeout=timeout), timeout=timeout)
    except AirflowUnavailable as exc:
        if exc.airflow_status != 401:
            raise
    _tokens.clear()
    return _request(method, url, body, token=_token(timeout=timeout), timeout=timeout)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects with every header, the bearer token and the password included,
    to any host, and turns a POST into a GET: a redirect is an answer here, never followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


_opener = urllib.request.build_opener(_NoRedirects)


def redact(url: str) -> str:
    """``url`` without credentials (``user:password@`` in AIRFLOW_API_URL) or a query string,
    for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "(the configured AIRFLOW_API_URL)"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _request(method: str, url: str, body: dict | None, *, token: str = "", timeout: float) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    shown = redact(url)
    try:
        request = urllib.request.Request(url, data=data, method=method)
    except ValueError:
        raise AirflowUnavailable(f"AIRFLOW_API_URL is not a usable URL ({shown})") from None
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener.open(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            target = redact(exc.headers.get("Location", "") or "")
            raise AirflowUnavailable(
                f"Airflow at {shown} answered with a redirect ({exc.code}) to {target or 'elsewhere'}; "
                "credentials are never sent on: set AIRFLOW_API_URL to the address that answers itself.",
                airflow_status=exc.code,
            ) from None
        detail = _without(exc.read().decode(errors="replace")[:300], url)
        raise AirflowUnavailable(f"Airflow refused {shown} ({exc.code}): {detail}", airflow_status=exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AirflowUnavailable(f"Airflow is unreachable at {shown}: {_without(str(reason), url)}", passing=True) from None
    except http.client.InvalidURL as exc:
        raise AirflowUnavailable(f"AIRFLOW_API_URL is not a usable URL ({shown}): {_without(str(exc), url)}") from None
    except ValueError as exc:  # not JSON: something else answers at that address
        raise AirflowUnavailable(f"Airflow's answer from {shown} is not JSON: {_without(str(exc), url)}") from None


def _without(text: str, url: str) -> str:
    """``text`` with the credentials (of ``url``, and the API password) cut out, in case an error
    quotes them."""
    parts = urllib.parse.urlsplit(url)
    for secret in (parts.password, settings.AIRFLOW_API_PASSWORD, parts.username, parts.query):
        if secret:
            text = text.replace(secret, "***")
    return text

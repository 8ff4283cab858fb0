"""The gallery's errors, each with the HTTP status that pages and the API both answer with.

Services raise these with a message meant for people; ``gallery.api.exceptions`` (DRF) and
``gallery.web.views`` (pages) turn them into responses through :func:`http_status`, so one input
gets one status on both sides. The libraries' own errors are translated where the gallery calls
them: the model's in ``gallery.engine.embedder``, the index engine's in ``gallery.engine.backend``,
storage's where it is read or written; so pages, the API and commands catch these alone.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class GalleryError(Exception):
    """Base: ``str(exc)`` is safe to show to whoever made the request."""

    status = 500
    field = ""  # the input field at fault, when there is one

    @property
    def detail(self) -> str:
        """What an operator is told (commands, logs): the same words, unless the error knows more."""
        return str(self)


class InvalidInput(GalleryError):
    status = 400


class UploadRejected(InvalidInput):
    """The upload is not an image we accept; nothing was stored."""

    field = "file"  # the API reports it against the upload's field


class BadQuery(InvalidInput):
    """The search query itself is wrong (empty, too long, weights that cancel out...)."""


class PageNotFound(GalleryError):
    """A page number past the results (or not a number)."""

    status = 404


class NoVersion(GalleryError):
    """No index version to go to: none is current, or none older is kept (a rollback)."""

    status = 409


class NotReady(GalleryError):
    """Search cannot answer yet: no index, or one built with another model."""

    status = 409


SEARCH_UNAVAILABLE = "Search is unavailable for a moment; please try again shortly."


class Unavailable(GalleryError):
    """A service the request needs (storage, the model, the index) failed; try again later."""

    status = 503


MODEL_UNAVAILABLE = "Search is unavailable: the search model could not be loaded. The administrators have the details."


class ModelUnavailable(Unavailable):
    """The configured CLIP weights cannot be loaded on this host. ``str()`` is for people;
    ``detail`` (paths, settings) is for the operator: commands print it, the log has it."""

    def __init__(self, detail: str) -> None:
        super().__init__(MODEL_UNAVAILABLE)
        self._detail = detail

    @property
    def detail(self) -> str:
        return self._detail


class StorageUnavailable(Unavailable):
    """Storage refused or could not be reached; nothing was saved."""


class AirflowUnavailable(Unavailable):
    """Airflow did not accept a request; the message says why. ``airflow_status`` is the HTTP
    status Airflow answered, when it answered; ``passing`` says the same request may work in a
    moment (no answer, an overloaded or restarting Airflow, the DAG not loaded yet), where a
    refusal (a wrong login, a bad address) stays until someone changes the settings."""

    status = 502

    def __init__(self, message: str, *, airflow_status: int | None = None, passing: bool = False) -> None:
        super().__init__(message)
        self.airflow_status = airflow_status
        self.passing = passing or airflow_status == 429 or (airflow_status or 0) >= 500


def http_status(exc: Exception) -> int | None:
    """The status for an error a service raised, or ``None`` for a bug (a 500)."""
    return exc.status if isinstance(exc, GalleryError) else None


def public_message(exc: Exception) -> str:
    """What pages and the API say about an error a service raised. A model that cannot be loaded
    says why in server terms (paths, settings): that goes to the log, people get a plain sentence."""
    if isinstance(exc, ModelUnavailable):
        logger.error("the CLIP model could not be loaded: %s", exc.detail)
    return str(exc)

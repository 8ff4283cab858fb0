"""Saved searches: a member keeps a query and is shown the images that match it as they arrive.

The query's fields are stored in the row (a signed query token expires after
SEARCH_TOKEN_MAX_AGE); an example image only as its vector. The combined query vector is
encoded once, when the search is saved, and kept with the id of its model; it is encoded again
only after the gallery's model changes (at the first run that needs it). A member keeps at
most SAVED_SEARCHES_PER_USER of them.

After each embed run, the DAG's ``saved_search_matches`` task calls
:func:`saved_searches_record_matches` with the run's new images: one matrix product of the
stored query vectors by the new vectors, and every pair at or above SEARCH_WEAK_SCORE is a
match. That is the cosine that search ranks by (CLIP's side of the results page), with no cut
at SEARCH_MAX_RESULTS however large the gallery. It is not the whole of the results page's
rule: a text query's page also fuses a keyword ranking (titles, tags, descriptions) by rank,
which has no per-image threshold that could say "this new image matches"; so a new image
that only its words would bring onto the page is not announced. Only images uploaded after
the search was saved count: re-embedding the gallery with a new model does not announce old
photos as new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import IntegerField, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from gallery.catalogue.sampling import pk_among
from gallery.errors import BadQuery, InvalidInput
from gallery.models import Image, SavedSearch, SavedSearchMatch, decode_vector, vectors_of
from gallery.search import SearchQuery

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = 200
NEW_COUNT_MAX = 100  # new matches counted one by one; past it, "100+"
BLOCK = 500  # new images scored per matrix product when recording matches


def saved_search_create(*, user, query: SearchQuery, name: str = "") -> SavedSearch:
    """Keep ``query`` (text, example image, or both, with weights and "but not") for ``user``."""
    if query.similar_to is not None:
        raise InvalidInput("“More like this image” searches cannot be saved; save a text or image search.")
    query.check_weights()
    _check_cap(user)  # before encoding: a member at the cap costs no model time
    vector, space = query.vector()  # encoded once, here (a search just encoded it: cached); BadQuery if it cannot be
    with transaction.atomic():
        # One member's saves take turns, so two at once cannot both pass the cap.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        _check_cap(user)
        return SavedSearch.objects.create(
            user=user,
            name=" ".join(name.split())[:NAME_MAX_LENGTH],
            text=query.text,
            text_weight=query.text_weight,
            image_vector=None if query.image_vector is None else np.asarray(query.image_vector, dtype=np.float32).tobytes(),
            image_model=query.image_model if query.image_vector is not None else "",
            image_weight=query.image_weight,
            negative_text=query.negative_text,
            negative_weight=query.negative_weight,
            query_vector=np.asarray(vector, dtype=np.float32).tobytes(),
            query_model=space,
        )


def _check_cap(user) -> None:
    cap = settings.SAVED_SEARCHES_PER_USER
    if SavedSearch.objects.filter(user=user).count() >= cap:
        raise InvalidInput(f"You have {cap} saved searches, the most one member can keep; delete one to save another.")


def saved_search_query(saved: SavedSearch) -> SearchQuery:
    """The stored fields as a query again."""
    vector = None if saved.image_vector is None else decode_vector(saved.image_vector)
    return SearchQuery(
        text=saved.text,
        image_vector=vector,
        image_model=saved.image_model,
        text_weight=saved.text_weight,
        image_weight=saved.image_weight,
        negative_text=saved.negative_text,
        negative_weight=saved.negative_weight,
    )


def saved_search_delete(*, saved: SavedSearch) -> None:
    saved.delete()


class _CountOf(Subquery):
    """``COUNT(*)`` of a (limited) subquery's rows: a count that stops at the limit."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) capped)"
    output_field = IntegerField()


def saved_searches_of(user, *, counted: bool = True) -> QuerySet[SavedSearch]:
    """``user``'s saved searches, newest first, each with ``new_count`` (matches found since
    last looked, counted up to NEW_COUNT_MAX + 1: a badge says "100+", and the count reads at
    most that many rows however many matched) unless not ``counted``."""
    if not (user and user.is_authenticated):
        return SavedSearch.objects.none()
    mine = SavedSearch.objects.filter(user=user).order_by("-created_at", "-pk")
    if not counted:
        return mine
    new = SavedSearchMatch.objects.filter(saved_search=OuterRef("pk"), image__hidden=False).filter(
        Q(saved_search__last_seen_at__isnull=True) | Q(found_at__gt=OuterRef("last_seen_at"))
    )
    return mine.annotate(new_count=_CountOf(new.order_by().values("pk")[: NEW_COUNT_MAX + 1]))


def new_count_label(new_count: int) -> str:
    """A ``new_count`` as people read it: "" for none, "100+" past NEW_COUNT_MAX."""
    if not new_count:
        return ""
    return f"{NEW_COUNT_MAX}+" if new_count > NEW_COUNT_MAX else str(new_count)


def saved_search_matches(saved: SavedSearch, *, new_only: bool = False) -> QuerySet[SavedSearchMatch]:
    """Matches of visible images, newest first; ``new_only``: found since the member last looked."""
    # Not the 2 KB vector of every match (a sort would carry them all).
    matches = saved.matches.filter(image__hidden=False).select_related("image").defer("image__embedding")
    if new_only and saved.last_seen_at is not None:
        matches = matches.filter(found_at__gt=saved.last_seen_at)
    return matches.order_by("-found_at", "-score", "pk")


def is_new(saved: SavedSearch, match: SavedSearchMatch) -> bool:
    return saved.last_seen_at is None or match.found_at > saved.last_seen_at


def saved_searches_mark_seen(*, searches: Iterable[SavedSearch], at=None) -> None:
    """The member has looked: what is there now is no longer new."""
    at = at or timezone.now()
    SavedSearch.objects.filter(pk__in=[s.pk for s in searches]).update(last_seen_at=at)


def saved_searches_record_matches(*, image_ids: Iterable[int], model_id: str) -> int:
    """Score the embedded, visible images of ``image_ids`` (vectors of ``model_id``) against
    every saved search and record the matches at or above SEARCH_WEAK_SCORE. Returns how many
    were recorded; running it again records nothing more.

    Reads the new rows (a block at a time) and the saved searches' stored vectors, never the
    rest of the gallery; the text encoder runs only for a search whose vector belongs to
    another model (after a model change), once, and the new vector is kept."""
    wanted = sorted(set(image_ids))
    if not model_id or not wanted or not SavedSearch.objects.exists():
        return 0
    _encode_stale(SavedSearch.objects.all(), model_id)
    searches = list(
        SavedSearch.objects.filter(query_model=model_id, query_vector__isnull=False).values_list(
            "pk", "query_vector", "created_at"
        )
    )
    if not searches:
        return 0
    queries = vectors_of(blob for _, blob, _ in searches)
    saved_at = np.array([at.timestamp() for _, _, at in searches])
    recorded = 0
    for start in range(0, len(wanted), BLOCK):  # bounded memory after a bulk import
        new = Image.objects.visible().embedded(model_id).filter(pk_among(wanted[start : start + BLOCK]))
        rows = list(new.values_list("pk", "embedding", "uploaded_at"))
        if rows:
            recorded += _record(rows, searches, queries, saved_at)
    if recorded:
        logger.info("saved searches: %d new match(es) recorded", recorded)
    return recorded


def _record(rows: list[tuple], searches: list[tuple], queries: np.ndarray, saved_at: np.ndarray) -> int:
    ids = np.fromiter((pk for pk, _, _ in rows), dtype=np.int64, count=len(rows))
    vectors = vectors_of(blob for _, blob, _ in rows)
    uploaded = np.array([at.timestamp() for _, _, at in rows])
    scores = queries @ vectors.T  # (saved searches, new images): one matrix product
    # Only images uploaded after the search was saved count: re-embedding the gallery with a
    # new model does not announce old photos as new.
    hits = (scores >= settings.SEARCH_WEAK_SCORE) & (uploaded[None, :] >= saved_at[:, None])
    found = [
        SavedSearchMatch(saved_search_id=searches[s][0], image_id=int(ids[n]), score=float(scores[s, n]))
        for s, n in zip(*np.nonzero(hits))
    ]
    if not found:
        return 0
    with transaction.atomic():
        known = set(SavedSearchMatch.objects.filter(image_id__in=ids.tolist()).values_list("saved_search_id", "image_id"))
        found = [match for match in found if (match.saved_search_id, match.image_id) not in known]
        SavedSearchMatch.objects.bulk_create(found, batch_size=500, ignore_conflicts=True)
    return len(found)


def _encode_stale(searches: QuerySet[SavedSearch], model_id: str) -> int:
    """Encode (once) the saved searches whose stored vector is missing or of another model,
    when ``model_id`` is the model this process has: a model change re-encodes each search
    once, at the first run after it. Returns how many were encoded."""
    stale = searches.exclude(query_model=model_id)
    if not stale.exists():
        return 0
    from gallery.engine import embedder

    if embedder.embedder().model_id != model_id:  # vectors of a model this process does not run
        return 0
    encoded = 0
    for saved in stale.iterator():
        vector, space = _query_vector(saved_search_query(saved), saved_pk=saved.pk)
        SavedSearch.objects.filter(pk=saved.pk).update(query_vector=vector, query_model=space)
        encoded += 1
    logger.info("saved searches: %d query vector(s) encoded with %s", encoded, model_id)
    return encoded


def _query_vector(query: SearchQuery, *, saved_pk: int | None = None) -> tuple[bytes | None, str]:
    """The query's vector as stored (float32 bytes) and its model. A search whose example image
    belongs to another model cannot be encoded any more: it is stored without a vector for the
    configured model, matches nothing, and is not encoded again (logged)."""
    from gallery.engine import embedder

    try:
        vector, space = query.vector()
    except BadQuery as exc:
        logger.info("saved search %s cannot be matched: %s", saved_pk, exc)
        return None, embedder.embedder().model_id
    return np.asarray(vector, dtype=np.float32).tobytes(), space

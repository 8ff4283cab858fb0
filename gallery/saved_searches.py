"""Saved searches: a member keeps a query and is shown the images that match it as they arrive.

The query's fields are stored in the row (a signed query token expires after
SEARCH_TOKEN_MAX_AGE); an example image only as its vector. After each embed run,
:func:`saved_searches_record_matches` scores the run's new vectors against every saved search,
exactly (one matrix-vector product per search, the same cosine search ranks by, and no cut at
SEARCH_MAX_RESULTS however large the gallery), and records those at or above SEARCH_WEAK_SCORE.
Only images uploaded after the search was saved count: re-embedding the gallery with a new
model does not announce old photos as new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from gallery.errors import BadQuery, InvalidInput
from gallery.models import Image, SavedSearch, SavedSearchMatch
from gallery.search import SearchQuery

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = 200


def saved_search_create(*, user, query: SearchQuery, name: str = "") -> SavedSearch:
    """Keep ``query`` (text, example image, or both, with weights and "but not") for ``user``."""
    if query.similar_to is not None:
        raise InvalidInput("“More like this image” searches cannot be saved; save a text or image search.")
    query.check_weights()
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
    )


def saved_search_query(saved: SavedSearch) -> SearchQuery:
    """The stored fields as a query again."""
    vector = None if saved.image_vector is None else np.frombuffer(bytes(saved.image_vector), dtype=np.float32)
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


def saved_searches_of(user) -> QuerySet[SavedSearch]:
    """``user``'s saved searches, each with ``new_count`` (matches found since last looked)."""
    if not (user and user.is_authenticated):
        return SavedSearch.objects.none()
    new = Q(matches__image__hidden=False) & (Q(last_seen_at__isnull=True) | Q(matches__found_at__gt=F("last_seen_at")))
    return SavedSearch.objects.filter(user=user).annotate(new_count=Count("matches", filter=new)).order_by("-created_at", "-pk")


def saved_search_matches(saved: SavedSearch, *, new_only: bool = False) -> QuerySet[SavedSearchMatch]:
    """Matches of visible images, newest first; ``new_only``: found since the member last looked."""
    matches = saved.matches.filter(image__hidden=False).select_related("image")
    if new_only and saved.last_seen_at is not None:
        matches = matches.filter(found_at__gt=saved.last_seen_at)
    return matches.order_by("-found_at", "-score", "pk")


def is_new(saved: SavedSearch, match: SavedSearchMatch) -> bool:
    return saved.last_seen_at is None or match.found_at > saved.last_seen_at


def saved_searches_mark_seen(*, searches: Iterable[SavedSearch], at=None) -> None:
    """The member has looked: what is there now is no longer new."""
    at = at or timezone.now()
    SavedSearch.objects.filter(pk__in=[s.pk for s in searches]).update(last_seen_at=at)


def saved_searches_record_matches(image_ids: Iterable[int]) -> int:
    """Score the embedded, visible images of ``image_ids`` against every saved search and record
    the matches at or above SEARCH_WEAK_SCORE. Returns how many were recorded; running it again
    records nothing more."""
    from gallery import clip

    model_id = clip.embedder().model_id
    if not SavedSearch.objects.exists():
        return 0
    wanted, rows = sorted(set(image_ids)), []
    for start in range(0, len(wanted), 500):  # SQLite takes a limited number of parameters
        rows += Image.objects.filter(
            pk__in=wanted[start : start + 500], embedding_model=model_id, embedding__isnull=False, hidden=False
        ).values_list("pk", "embedding", "uploaded_at")
    if not rows:
        return 0
    ids = np.fromiter((pk for pk, _, _ in rows), dtype=np.int64, count=len(rows))
    vectors = np.vstack([np.frombuffer(bytes(blob), dtype=np.float32) for _, blob, _ in rows])
    uploaded = [at for _, _, at in rows]
    recorded = 0
    for saved in SavedSearch.objects.filter(created_at__lte=max(uploaded)).iterator():
        try:
            vector, space = saved_search_query(saved).vector()
        except BadQuery as exc:  # an example image from another model: it cannot be compared any more
            logger.info("saved search %s skipped: %s", saved.pk, exc)
            continue
        if space != model_id:
            continue
        scores = vectors @ vector
        found = [
            SavedSearchMatch(saved_search=saved, image_id=int(ids[n]), score=float(scores[n]))
            for n in np.flatnonzero(scores >= settings.SEARCH_WEAK_SCORE)
            if uploaded[n] >= saved.created_at
        ]
        if found:
            with transaction.atomic():
                before = saved.matches.count()
                SavedSearchMatch.objects.bulk_create(found, ignore_conflicts=True)
                recorded += saved.matches.count() - before
    if recorded:
        logger.info("saved searches: %d new match(es) recorded", recorded)
    return recorded

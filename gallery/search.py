"""Selectors that answer searches: by text, by an uploaded image, and "more like this".

Each encodes the query, asks the current index for the nearest vectors, and drops ids whose
rows were deleted or hidden since the index was built, keeping the index's rank order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from django.conf import settings

from gallery import clip
from gallery.index_cache import IndexUnavailable, current_index
from gallery.models import Image
from gallery.uploads import UploadRejected, inspect_upload, read_upload
from indexer.images import open_rgb
from indexer.index import IndexMismatch, SearchIndex

MAX_QUERY_LENGTH = 300  # characters; CLIP reads at most 77 tokens anyway


class SearchUnavailable(Exception):
    """Search cannot run yet (no index, or one built with another model). Message for people."""


class BadQuery(ValueError):
    """The query itself is wrong. Message for people."""


@dataclass(frozen=True)
class SearchHit:
    image: Image
    score: float  # cosine similarity, -1..1
    rank: int  # 1-based, after dropping hidden and deleted images


def search_by_text(*, text: str) -> SearchResults:
    text = _clean_text(text)
    index = _require_index()  # before encoding: no index, no work
    return search_by_vector(clip.embed_text(text), model_id=clip.embedder().model_id, index=index)


def combined_query_vector(
    *,
    text: str = "",
    image_file: BinaryIO | None = None,
    text_weight: float = 1.0,
    image_weight: float = 1.0,
    negative_text: str = "",
    negative_weight: float = 0.5,
) -> np.ndarray:
    """Text and an example image together ("like this photo, but at night"), optionally
    steering away from a negative text ("but not ..."): a normalised weighted sum."""
    if not text.strip() and image_file is None:
        raise BadQuery("Give a text, an image, or both.")
    parts = []
    if text.strip():
        parts.append((clip.embed_text(_clean_text(text)), text_weight))
    if image_file is not None:
        parts.append((embed_query_image(file=image_file), image_weight))
    if negative_text.strip():
        parts.append((clip.embed_text(_clean_text(negative_text)), -negative_weight))
    vector = np.sum([weight * part for part, weight in parts], axis=0)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise BadQuery("The weights cancel out: give the text or the image a weight above zero.")
    return (vector / norm).astype(np.float32)


def search_combined(**query) -> SearchResults:
    """Search with :func:`combined_query_vector`'s arguments."""
    index = _require_index()
    return search_by_vector(combined_query_vector(**query), model_id=clip.embedder().model_id, index=index)


def embed_query_image(*, file: BinaryIO) -> np.ndarray:
    """The vector of an uploaded query image. The image is decoded in memory and never stored."""
    try:
        data = read_upload(file)
        inspect_upload(data)
    except UploadRejected as exc:
        raise BadQuery(str(exc)) from None
    image = open_rgb(data)
    return clip.embedder().encode_images([image])[0]


def search_by_image(*, file: BinaryIO) -> SearchResults:
    index = _require_index()
    return search_by_vector(embed_query_image(file=file), model_id=clip.embedder().model_id, index=index)


def search_similar(*, image: Image) -> SearchResults:
    """More like a gallery image, from its stored vector (it comes first, as its own twin)."""
    if image.vector is None:
        raise SearchUnavailable("This image is not embedded yet; similar images appear after the next index run.")
    return search_by_vector(image.vector, model_id=image.embedding_model)


class SearchResults(Sequence):
    """Ranked hits of visible images. Slicing (what a paginator does) loads only the rows of
    that slice: a page of 16 costs one small query, however many results were ranked."""

    def __init__(self, ranked: list[tuple[int, float]]):
        self._ranked = ranked  # (image id, score), best first, hidden and deleted ids dropped

    def __len__(self) -> int:
        return len(self._ranked)

    @property
    def best_score(self) -> float | None:
        return self._ranked[0][1] if self._ranked else None

    def __iter__(self):
        return iter(self[:])  # one query, not one per hit

    def __getitem__(self, item):
        if isinstance(item, int):
            return self[item : item + 1 or None][0]
        chosen = self._ranked[item]
        images = Image.objects.defer("embedding").in_bulk([pk for pk, _ in chosen])
        start = item.indices(len(self._ranked))[0]
        # A row deleted since the ranking keeps its rank but is skipped.
        return [
            SearchHit(image=images[pk], score=score, rank=start + n + 1)
            for n, (pk, score) in enumerate(chosen)
            if pk in images
        ]


def search_by_vector(vector: np.ndarray, *, model_id: str, index: SearchIndex | None = None) -> SearchResults:
    index = _require_index() if index is None else index
    try:
        index.manifest.check_model(model_id)
    except IndexMismatch as exc:
        raise SearchUnavailable(str(exc)) from None
    pairs = index.query(vector, settings.SEARCH_MAX_RESULTS, search_k=settings.INDEX_SEARCH_K)
    visible = set(Image.objects.filter(pk__in=[pk for pk, _ in pairs], hidden=False).values_list("pk", flat=True))
    return SearchResults([(pk, score) for pk, score in pairs if pk in visible])


def _clean_text(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise BadQuery("Type what you are looking for.")
    if len(text) > MAX_QUERY_LENGTH:
        raise BadQuery(f"The query is too long ({len(text)} characters; at most {MAX_QUERY_LENGTH}).")
    return text


def _require_index():
    try:
        index = current_index()
    except IndexUnavailable as exc:
        raise SearchUnavailable(f"Search is unavailable for a moment: the {exc}. Please try again shortly.") from None
    if index is None:
        raise SearchUnavailable(
            "Search is not ready yet: no index has been built. New uploads become searchable after the next index run."
        )
    return index

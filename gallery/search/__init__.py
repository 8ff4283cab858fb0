"""The one search path: a :class:`SearchQuery` value and :func:`search`, which answers it.

Pages and the API build a query from their input (text, an example image, both with weights
and a "but not" text, or "more like" a gallery image) and call :func:`search`; it checks the
index, encodes the query, asks the index (``gallery.engine.backend``: Annoy or Milvus) and, on a
snapshot engine, the fresh segment (``gallery.engine.fresh_segment``) for the nearest vectors, fuses
them with a keyword ranking for text queries (``gallery.catalogue.keywords``, ``gallery.search.ranking``), drops
rows deleted or hidden since the index was built, and returns :class:`SearchResults` that
:func:`paginate` pages.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.core import signing
from django.core.paginator import InvalidPage, Page, Paginator
from django.db import connection
from django.db.models import QuerySet
from django.utils.functional import cached_property

from gallery.catalogue import access, keywords
from gallery.catalogue.filters import BrowseFilter, browse_params, shown_unless_asked
from gallery.catalogue.sampling import pk_among
from gallery.catalogue.status import searchable_count
from gallery.catalogue.uploads import decode_upload, read_upload
from gallery.catalogue.visible import visible_among
from gallery.engine import embedder
from gallery.engine.backend import current_reader, index_errors, search_view
from gallery.errors import BadQuery, NotReady, PageNotFound, UploadRejected
from gallery.models import MAX_QUERY_LENGTH, Image
from gallery.search import facets, filtered_search, pins, ranking, recent, relevance
from gallery.search.facets import Facets
from indexer.index import IndexMismatch
from indexer.timing import timed

DEFAULT_NEGATIVE_WEIGHT = 0.5
_TOKEN_SALT = "gallery.search-query"
NOTHING_TO_SEARCH = "Give an example image, a text, or both."


SORTS = ("relevance", "newest", "oldest")  # newest and oldest: by date taken


@dataclass(frozen=True)
class ResultOptions:
    """How results are shown, beside what was asked: only the relevant ones (the query-adaptive
    cut of ``gallery.search.relevance``), and in which order. Sorting by date keeps the relevant ones
    only: by date, a weak match would sit among the good ones with nothing to tell it apart."""

    relevant: bool = False
    sort: str = "relevance"
    # The gallery's filters (gallery.catalogue.filters.BrowseFilter's parameters), applied inside the
    # search by gallery.search.filtered_search; empty: the whole gallery.
    filters: tuple[tuple[str, str], ...] = ()
    curator: bool = False  # may search hidden images (``hidden=true``), as the gallery page does
    # The results' facets will be shown (SearchResults.facets): their dates and cameras are read
    # with their visibility, in the one query over the ranked ids, not in a second one.
    facets: bool = False

    @classmethod
    def from_params(cls, params, *, user=None, facets: bool | None = None) -> ResultOptions:
        """From a page's or the API's query string (``relevant=true``, ``sort=newest``,
        ``facets=true``, and the gallery's filters: ``taken_after``, ``camera``, ``tags``...), for
        ``user``; ``facets``, when given, instead of the query string's."""
        sort = params.get("sort") or "relevance"
        if sort not in SORTS:
            raise BadQuery(f"Unknown sort {sort[:20]!r}: use one of {', '.join(SORTS)}.")
        relevant = _flag(params, "relevant")
        filters = browse_params(params)
        curator = user is not None and access.can_curate(user)
        options = cls(
            relevant=relevant or sort != "relevance", sort=sort, filters=filters, curator=curator,
            facets=_flag(params, "facets") if facets is None else facets,
        )
        options.filtered_images()  # bad filter values are the query's fault, said now
        return options

    def filtered_images(self) -> QuerySet[Image] | None:
        """The images the filters keep (visible ones, unless a curator asks for ``hidden``), or
        None without filters. Raises BadQuery."""
        if not self.filters:
            return None
        return self._filtered.all()  # a fresh copy: what the caller does to it stays its own

    @property
    def includes_hidden(self) -> bool:
        """Whether the filtered images may be hidden ones (a curator's ``hidden=true``): the
        engine must not leave hidden rows out then."""
        return self.curator and dict(self.filters).get("hidden") == "true"

    @cached_property
    def _filtered(self) -> QuerySet[Image]:  # the form is built and checked once per request
        params = dict(self.filters)
        browse = BrowseFilter(params, queryset=shown_unless_asked(Image.objects.all(), params, curator=self.curator))
        if not browse.is_valid():
            raise BadQuery(" ".join(f"{name}: {' '.join(errors)}" for name, errors in browse.errors.items()))
        return browse.qs

    def as_params(self) -> dict:
        return {**({"relevant": "true"} if self.relevant and self.sort == "relevance" else {}), **({"sort": self.sort} if self.sort != "relevance" else {})}


def _flag(params, name: str) -> bool:
    """A yes-or-no query parameter: true, false, 1, 0 or absent (false); anything else is the
    query's fault."""
    value = (params.get(name) or "").lower()
    if value not in ("", "true", "false", "1", "0"):
        raise BadQuery(f"{name} is true or false.")
    return value in ("true", "1")


@dataclass(frozen=True, eq=False)
class SearchQuery:
    """What someone asked for. The combined vector is
    ``normalise(text_weight * text + image_weight * image - negative_weight * negative)``."""

    text: str = ""
    image_vector: np.ndarray | None = None  # of an example image, which is never stored
    image_model: str = ""  # the vector space of ``image_vector``
    text_weight: float = 1.0
    image_weight: float = 1.0
    negative_text: str = ""
    negative_weight: float = DEFAULT_NEGATIVE_WEIGHT
    similar_to: int | None = None  # "more like" this image (its stored vector)
    ranking: str = ""  # hybrid, clip or keywords; "" for SEARCH_RANKING (text queries only)

    @classmethod
    def build(
        cls,
        *,
        text: str = "",
        image_file: BinaryIO | None = None,
        text_weight: float = 1.0,
        image_weight: float = 1.0,
        negative_text: str = "",
        negative_weight: float = DEFAULT_NEGATIVE_WEIGHT,
    ) -> SearchQuery:
        """A query from people's input, validated; an example image is embedded here, in memory."""
        text, negative_text = _clean_text(text, required=False), _clean_text(negative_text, required=False)
        if not text and image_file is None:
            raise BadQuery(NOTHING_TO_SEARCH)
        query = cls(
            text=text,
            text_weight=text_weight,
            image_weight=image_weight,
            negative_text=negative_text,
            negative_weight=negative_weight,
        )
        if image_file is not None:
            query = replace(query, image_vector=embed_query_image(file=image_file), image_model=embedder.embedder().model_id)
        query.check_weights()
        return query

    @classmethod
    def similar(cls, image: Image) -> SearchQuery:
        """"More like" ``image``: its stored vector, taken from the row at hand when it was read
        with it (the image page and the API's read the whole row), not read a second time."""
        query = cls(similar_to=image.pk)
        # An instance without a vector may be older than its row (embedding writes the row, not
        # the instances held): that one is read again.
        if "embedding" not in image.get_deferred_fields() and image.embedding is not None:
            query.__dict__["_similar"] = (image.vector, image.embedding_model)
        return query

    @property
    def plain_text(self) -> str:
        """The text of a plain text query ("red running shoes": no example image, not "more
        like this", no "but not" words, which the full-text index cannot match), or "". Only
        those are matched by their words and pinned."""
        if self.image_vector is not None or self.similar_to is not None or self.negative_text:
            return ""
        return self.text

    def ranking_mode(self) -> str:
        """How this query is ranked: a plain text query as asked (hybrid by default); every
        other query by CLIP alone."""
        return (self.ranking or settings.SEARCH_RANKING) if self.plain_text else ranking.CLIP

    def check_weights(self) -> None:
        if (self.text and self.text_weight > 0) or (self.image_vector is not None and self.image_weight > 0):
            return
        raise BadQuery("The weights cancel out: give the text or the image a weight above zero.")

    def model_id(self) -> str | None:
        """The vector space the query is searched in (a model id), known before any encoding:
        "more like" an image, the model of its stored vector (None before it is embedded:
        :meth:`vector` says so); otherwise the configured model's (loading the model)."""
        if self.similar_to is not None:
            return self._similar[1] if self._similar is not None else None
        return embedder.embedder().model_id

    @cached_property
    def _similar(self) -> tuple[np.ndarray, str] | None:
        """The stored vector of the image "more like" asks about, and its model; None before it is embedded."""
        image = Image.objects.only("embedding", "embedding_model").filter(pk=self.similar_to).first()
        return (image.vector, image.embedding_model) if image is not None and image.vector is not None else None

    def vector(self) -> tuple[np.ndarray, str]:
        """The query's vector and the vector space it lives in (the model id)."""
        if self.similar_to is not None:
            if self._similar is None:
                raise NotReady("This image is not embedded yet; similar images appear after the next index run.")
            return self._similar
        model_id = embedder.embedder().model_id
        parts = []
        if self.text:
            parts.append((embedder.embed_text(self.text), self.text_weight))
        if self.image_vector is not None:
            if self.image_model != model_id:
                raise BadQuery("That image search was made with another model; search with the image again.")
            parts.append((self.image_vector, self.image_weight))
        if self.negative_text:
            parts.append((embedder.embed_text(self.negative_text), -self.negative_weight))
        return combine(parts), model_id

    def describe(self) -> str:
        """For headings: ``your image (50%) + “at night”, but not “people”``."""
        parts = []
        if self.image_vector is not None:
            share = self.image_weight / ((self.text_weight if self.text else 0) + self.image_weight or 1)
            parts.append("your image" if not self.text else f"your image ({round(100 * share)}%)")
        if self.text:
            parts.append(f"“{self.text}”")
        label = " + ".join(parts)
        return f"{label}, but not “{self.negative_text}”" if self.negative_text else label

    def to_token(self) -> str:
        """A signed, URL-safe form of the query, so results of an image search can be paged
        and reloaded without storing anything server-side (float16 keeps the vector at ~1 KB)."""
        data = {
            "t": self.text,
            "tw": self.text_weight,
            "iw": self.image_weight,
            "n": self.negative_text,
            "nw": self.negative_weight,
        }
        if self.image_vector is not None:
            data["v"] = base64.b64encode(self.image_vector.astype(np.float16).tobytes()).decode()
            data["m"] = self.image_model
        return signing.dumps(data, salt=_TOKEN_SALT, compress=True)

    @classmethod
    def from_token(cls, token: str) -> SearchQuery:
        try:
            data = signing.loads(token, salt=_TOKEN_SALT, max_age=settings.SEARCH_TOKEN_MAX_AGE)
        except signing.BadSignature:
            raise BadQuery("That image search has expired or is damaged; search with the image again.") from None
        vector = None
        if "v" in data:
            vector = np.frombuffer(base64.b64decode(data["v"]), dtype=np.float16).astype(np.float32)
        return cls(
            text=data["t"],
            image_vector=vector,
            image_model=data.get("m", ""),
            text_weight=data["tw"],
            image_weight=data["iw"],
            negative_text=data["n"],
            negative_weight=data["nw"],
        )


def combine(parts: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """The normalised weighted sum of unit vectors."""
    vector = np.sum([weight * part for part, weight in parts], axis=0)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise BadQuery("The weights cancel out: give the text or the image a weight above zero.")
    return (vector / norm).astype(np.float32)


def embed_query_image(*, file: BinaryIO) -> np.ndarray:
    """The vector of an example image, decoded in memory with the upload rules; never stored."""
    model = embedder.embedder()
    try:
        _, picture = decode_upload(read_upload(file), min_size=model.image_size)
    except UploadRejected as exc:
        raise BadQuery(str(exc)) from None
    with embedder.model_errors(), timed("encode"):
        return model.encode_images([picture])[0]


def search(query: SearchQuery, options: ResultOptions = ResultOptions()) -> SearchResults:
    """Ranked visible images for ``query``.

    What CLIP sees: the current index's nearest vectors; on Annoy merged by score with an exact
    search over the fresh segment (vectors embedded since that index was built), while Milvus
    holds those already and leaves hidden rows out itself. A text query (no
    image, not "more like") is also matched by its words against titles, tags and descriptions
    (``gallery.catalogue.keywords``), and the two rankings are fused (``gallery.search.ranking``); its
    ``ranking`` (or SEARCH_RANKING) can ask for one of them alone. Raises :class:`NotReady`
    while CLIP has nothing to search, unless the words alone were asked for.

    ``options.relevant`` keeps CLIP's relevant results only (``gallery.search.relevance``; what the
    words found stays), and ``options.sort`` orders them by date taken instead."""
    limit = settings.SEARCH_MAX_RESULTS
    mode = query.ranking_mode()
    filtered = options.filtered_images()
    clip_pairs, relevant, left_out = (
        _clip_ranking(query, limit, filtered, only_visible=not options.includes_hidden) if mode != ranking.KEYWORDS else ([], None, None)
    )
    if options.relevant and relevant is not None:
        clip_pairs = clip_pairs[:relevant]
    keyword_pairs = keywords.keyword_ranking(query.text, limit) if mode != ranking.CLIP else []
    if mode == ranking.CLIP:
        ranked = [(pk, score, ranking.LOOKS) for pk, score in clip_pairs]
    else:
        # The order is the fused one; the score shown stays the CLIP cosine, where CLIP ranked
        # the image (None for images only the words found).
        cosine = dict(clip_pairs)
        exact = keywords.exact_matches(query.text, keyword_pairs)
        fused = ranking.fuse(clip_pairs, keyword_pairs, k=settings.SEARCH_RRF_K, exact=exact)
        ranked = [(pk, cosine.get(pk), matched) for pk, _, matched in fused[:limit]]
    # Visible (and, with filters, passing them: what the words found is checked here).
    ids = [pk for pk, *_ in ranked]
    # The dates to sort by them; dates and cameras (facets.COLUMNS) for the facets.
    columns = facets.COLUMNS if options.facets else ("taken_at",) if options.sort != "relevance" else ()
    if filtered is not None:
        rows = filtered.filter(pk_among(ids)).order_by().values_list("pk", *columns)
    else:
        rows = visible_among(ids, columns, generation=left_out)  # not from ~320 rows
    shown = {pk: tuple(read) for pk, *read in rows}  # read: the columns, in that order
    ranked = [hit for hit in ranked if hit[0] in shown]
    if options.sort == "relevance":
        if filtered is None:  # a pinned image outside a filter would not belong in its results
            ranked = pins.apply_pins(query.plain_text, ranked, generation=left_out)  # only a plain text query is pinned
    else:  # by date taken; equal dates keep their relevance order (sorted() is stable)
        at = columns.index("taken_at")
        ranked = sorted(ranked, key=lambda hit: shown[hit[0]][at], reverse=options.sort == "newest")
    return SearchResults(
        ranked, text=query.text if mode != ranking.CLIP else "", relevant=relevant, hidden_included=options.includes_hidden,
        facet_rows=shown if options.facets else None,
    )


def _clip_ranking(
    query: SearchQuery, limit: int, filtered: QuerySet[Image] | None = None, *, only_visible: bool = True
) -> tuple[list[tuple[int, float]], int | None, int | None]:
    """``(id, cosine)`` of the nearest vectors, best first, from the index and the fresh segment
    (among ``filtered`` only, when given: ``gallery.search.filtered_search``); how many of them are
    relevant (None: too few images to judge); and the visibility generation read with the index
    (None when none was). ``only_visible``: an engine that filters visibility leaves hidden rows
    out (a curator's ``hidden=true`` filter wants them)."""
    model_id = query.model_id()
    # One query; the segment is None on a live engine (and for an image not embedded yet).
    index, segment, left_out = search_view(model_id) if model_id is not None else (current_reader(), None, None)
    if index is None and not (segment is not None and len(segment)):
        _not_ready()  # before encoding: nothing to search, no work
    if index is not None and model_id is not None:
        try:
            index.info.check_model(model_id)
        except IndexMismatch as exc:
            # Another model's index: a partial answer from the re-embedded rows alone would
            # hide most of the gallery, so say so until the new index is published.
            raise NotReady(str(exc)) from None
    vector, _ = query.vector()

    def nearest(k: int) -> list[tuple[int, float]]:
        built: list[tuple[int, float]] = []
        if index is not None:
            with index_errors(), timed("index"):
                built = index.query(vector, k, only_visible=only_visible)  # Milvus leaves hidden rows out; Annoy cannot
        # Of the fresh rows (hundreds between compactions), only those scoring as high as the
        # index's k-th can be among the k best: merging all of them cost more than finding them.
        at_least = built[-1][1] if len(built) >= k else -np.inf
        return merge_ranked(built, segment.query(vector, k, at_least=at_least) if segment is not None else [])[:k]

    def nearest_among(ids: list[int], k: int) -> list[tuple[int, float]]:
        with index_errors(), timed("index"):
            return index.query(vector, k, only_visible=only_visible, among_ids=ids)

    collection_size = searchable_count  # at most INDEX_STATUS_CACHE_SECONDS old: the size matters, not the rows
    if filtered is not None:
        pairs, share = filtered_search.nearest_within(
            filtered, vector, model_id=model_id, limit=limit, nearest=nearest, collection_size=searchable_count,
            # An engine that filters inside its search holds every vector (no fresh segment beside it).
            nearest_among=nearest_among if index is not None and index.filters_ids and segment is None else None,
        )
        collection_size = lambda: max(1, round(share * searchable_count()))  # noqa: E731 (chance among the filtered)
    elif segment is None:  # a live engine: no snapshot to keep an answer by
        pairs = nearest(limit)
    else:  # the same nearest vectors until the snapshot changes (kept as a tuple: never changed in place)
        snapshot = (index.version if index is not None else None, segment.fingerprint)
        pairs = list(recent.ranking((snapshot, vector.tobytes(), limit, only_visible), lambda: tuple(nearest(limit))))
    # Judged on every search: the gallery's size and the background sample change within a snapshot.
    relevant = relevance.relevant_prefix(
        [score for _, score in pairs], vector, model_id=model_id, version=index.version if index is not None else None,
        collection_size=collection_size,
    )
    return pairs, relevant, left_out


def merge_ranked(*rankings: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One ranking, best first, from several: an id found more than once keeps its best score
    (a row published while a query ran can come from both the index and the fresh segment)."""
    best: dict[int, float] = {}
    for one in rankings:
        for pk, score in one:
            if score > best.get(pk, -np.inf):
                best[pk] = score
    return sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))


@dataclass(frozen=True)
class SearchHit:
    image: Image
    # Cosine similarity between the query and the image, -1..1, when CLIP ranked the image;
    # None for an image only its words found, or one a curator pinned that search did not rank.
    score: float | None
    rank: int  # 1-based, after dropping hidden and deleted images
    matched: str = ranking.LOOKS  # "looks" (CLIP), "words" (title, tags, description) or "both"
    pinned: bool = False  # placed by a curator (gallery.search.pins)
    # The lines read in the picture (OCR) that hold a word of the query, as (word, matched)
    # pairs: why its words matched, when the text in the picture is why.
    text_read: tuple = ()


class SearchResults(Sequence):
    """Ranked hits of visible images. Slicing (what a paginator does) loads only the rows of
    that slice: a page of 16 costs one small query (their tags are in the rows:
    ``Image.tag_name_list``), however many results were ranked."""

    def __init__(
        self, ranked: list[tuple], *, text: str = "", relevant: int | None = None, hidden_included: bool = False,
        facet_rows: dict[int, tuple] | None = None,
    ):
        # (image id, score, matched), best first, hidden (unless a curator asked for them:
        # ``hidden_included``) and deleted ids dropped; an (image id, score) pair is a CLIP hit.
        self._hidden_included = hidden_included
        self._pinned = getattr(ranked, "pinned", frozenset())  # a gallery.search.pins.PinnedRanking
        self._ranked = [(hit[0], hit[1], hit[2] if len(hit) > 2 else ranking.LOOKS) for hit in ranked]
        self._text = text  # the query's words, to show which words in a picture matched
        # How many of CLIP's results the relevance rule kept (None: too few images to judge).
        self.relevant = relevant
        # id -> (taken_at, camera_model), read with the hits' visibility when facets were asked for.
        self._facet_rows = facet_rows

    def __len__(self) -> int:
        return len(self._ranked)

    @property
    def best_score(self) -> float | None:
        """The best CLIP cosine among the hits (None when CLIP ranked none of them)."""
        return max((score for _, score, _ in self._ranked if score is not None), default=None)

    @property
    def weak(self) -> bool:
        """Even the best match is poor (nothing pinned, no words matched, and CLIP found nothing
        relevant): say so rather than pretend. The relevance rule judges; on a gallery too
        small for it, a best cosine under SEARCH_WEAK_SCORE does."""
        if not self._ranked or self._pinned or any(matched != ranking.LOOKS for *_, matched in self._ranked):
            return False
        if self.relevant is not None:
            return self.relevant == 0
        return self._ranked[0][1] is not None and self._ranked[0][1] < settings.SEARCH_WEAK_SCORE

    def facets(self) -> Facets:
        """How these results spread over dates taken, cameras and tags: what the filters can
        narrow them to (``gallery.search.facets``). Their dates and cameras as the search read
        them (``ResultOptions.facets``), else from the visible-ids index (at most
        SEARCH_MAX_RESULTS entries); their tags in one query."""
        ids = [pk for pk, *_ in self._ranked]
        visible = not self._hidden_included
        if self._facet_rows is None:
            return facets.of_ids(ids, visible=visible)
        # A pinned image the search did not rank was not read with the rest.
        missing = [pk for pk in ids if pk not in self._facet_rows]
        held = {**self._facet_rows, **facets.columns_of(missing, visible=visible)} if missing else self._facet_rows
        return facets.of_rows([held[pk] for pk in ids if pk in held], ids)

    def __iter__(self):
        return iter(self[:])  # one query, not one per hit

    def __getitem__(self, item):
        if isinstance(item, int):
            return self[item : item + 1 or None][0]
        chosen = self._ranked[item]
        ids = [pk for pk, *_ in chosen]
        images = {image.pk: image for image in Image.objects.raw(_rows_sql(len(ids), connection.vendor), ids)} if ids else {}
        start = item.indices(len(self._ranked))[0]
        # A row deleted since the ranking keeps its rank but is skipped.
        return [
            SearchHit(
                image=images[pk], score=score, rank=start + n + 1, matched=matched, pinned=pk in self._pinned,
                text_read=tuple(keywords.text_read_matches(self._text, images[pk].ocr_text)) if matched != ranking.LOOKS else (),
            )
            for n, (pk, score, matched) in enumerate(chosen)
            if pk in images
        ]


@lru_cache(maxsize=None)  # one per page length: at most API_MAX_PAGE_SIZE of them
def _rows_sql(count: int, vendor: str) -> str:
    """The SQL that reads ``count`` images by id (every column but the vector), compiled once
    per process and length: Django compiles a QuerySet each time it runs, and for a page of 16
    search results that cost a third of the read (0.45 of 1.8 ms at a million images, 2 AMD EPYC
    cores with avx2 avx512f)."""
    return Image.objects.defer("embedding").filter(pk__in=range(count)).order_by().query.sql_with_params()[0]


def paginate(items: Sequence, number, *, page_size: int | None = None) -> Page:
    """One rule for pages and API: page 1 always exists; any other number that is not a page
    of the results (past the end, zero, not a number) is a 404."""
    paginator = Paginator(items, page_size or settings.SEARCH_PAGE_SIZE)
    try:
        return paginator.page(number or 1)
    except InvalidPage:
        raise PageNotFound(f"There is no page {str(number)[:20]!r} of these results.") from None


def _clean_text(text: str, *, required: bool = True) -> str:
    text = " ".join((text or "").split())
    if not text and required:
        raise BadQuery("Type what you are looking for.")
    if len(text) > MAX_QUERY_LENGTH:
        raise BadQuery(f"The query is too long ({len(text)} characters; at most {MAX_QUERY_LENGTH}).")
    return text


def text_query(text: str, *, ranking_name: str = "") -> SearchQuery:
    """A plain text search ("red running shoes"), ranked as ``ranking_name`` says (hybrid,
    clip or keywords; empty for SEARCH_RANKING)."""
    if ranking_name and ranking_name not in ranking.RANKINGS:
        raise BadQuery(f"Unknown ranking {ranking_name[:20]!r}: use one of {', '.join(ranking.RANKINGS)}.")
    return SearchQuery(text=_clean_text(text), ranking=ranking_name)


def _not_ready():
    raise NotReady(
        "Search is not ready yet: no index has been built. New uploads become searchable after the next index run."
    )

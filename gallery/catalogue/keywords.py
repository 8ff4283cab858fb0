"""Keyword search: the database's own full-text search over title, tags, description and the
words read in the picture (OCR: ``ocr_text``, with the other spellings of its codes in
``ocr_terms``; see :func:`code_spellings`).

One function, :func:`keyword_ranking`, with an implementation per database:

- PostgreSQL: each image's document is a weighted ``tsvector`` (title A, tags B, description C,
  text read D, the ``english`` configuration, so "shoes" finds "shoe") that the database keeps
  in a stored generated column, ``keyword_document`` (migration 0015: PostgreSQL's alone, the
  model does not know it), matched with ``websearch_to_tsquery`` (quotes for phrases, ``or``,
  ``-word``) through a GIN index on it and ranked by ``ts_rank`` on the stored document.
- SQLite: an FTS5 table (``gallery_image_fts``, rowid = image id, the porter stemmer), ranked by
  BM25 with the same field weights; a query with a phrase too common to rank (below) is ordered
  by those weights' fields instead (BM25 would count all of that phrase's matches on every
  search). The same websearch syntax is translated to FTS5's query language here. The table
  is kept in sync by the services that write images (uploads, curation, tags) through
  :func:`images_reindex` and :func:`images_forget`.

Both first ask for every word; if that finds nothing and the query had several plain words (no
quotes, ``or`` or ``-``), for any of them ("a photo of a cat" still finds "Chelsea the cat"), so
natural sentences help too; the words too common to rank all their matches (below) are left out
of that first, so "photo lighthouse" finds every lighthouse, not only the newest photos
(:func:`_attempts`; SQLite tries them one at a time, PostgreSQL in one statement). Both rank
at most (about) the newest RANKED_MATCHES_MAX matches: scoring costs a little per match, and a
word in every image of a large gallery would cost seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache

from cachetools import LRUCache, TTLCache
from django.db import connection

from gallery.models import Image

TEXT_CONFIG = "english"  # PostgreSQL's stemming and stop words; SQLite uses the porter stemmer
FTS_TABLE = "gallery_image_fts"  # SQLite only (migration 0003)
# Relative weight of a match in the title, the tags, the description and the text read in the
# picture. PostgreSQL's ts_rank weighs A/B/C/D as 1.0/0.4/0.2/0.1; BM25 in SQLite gets the same ratios.
FTS5_WEIGHTS = (1.0, 0.4, 0.2, 0.1)
FTS_COLUMNS = ("title", "tags", "description", "text")  # the FTS5 table's, in that order
EXACT_CANDIDATES = 50  # keyword hits checked for an exact title or code (see exact_matches)
# A query whose words match more images than this ranks only the newest this many of them
# (on PostgreSQL about this many, estimated from its statistics). Both engines score every match
# they are given: "photo" in every title of a million images took 1.2 s on SQLite and 3.5 s on
# PostgreSQL (11 and 96 ms at 10,000); a word that common says little about which image is
# meant, and CLIP ranks the whole gallery beside it (docs/performance.md, "Scale").
RANKED_MATCHES_MAX = 10_000
DOCUMENT_COLUMN = "keyword_document"  # PostgreSQL (migration 0015): ranked, indexed, ANALYZE'd
_STATISTICS_SECONDS = 600  # they change with ANALYZE (autovacuum's), not with each upload
# A code is one token of letters and digits, at least one of each, maybe joined by - _ . /
# ("SKU-10482", "A7", "IMG_2041"): something a picture can never show but a title can carry.
CODE = re.compile(r"(?=[^ ]*\d)(?=[^ ]*[^\W\d_])\w+(?:[-_./]\w+)*")
# A code whose parts are joined by separators ("SKU-10473", "A7/B2"): people type it joined
# ("sku10473") or spaced ("SKU 10473"), and the databases split it differently (PostgreSQL reads
# "SKU-10473" as "sku" and "-10473"), so the text read also carries both of those spellings.
_SPACED_CODE = re.compile(r"(?<![\w-])([A-Z]{1,6})[ \t]+(\d{3,}(?:[-_./]\w+)*)(?![\w-])")
_SEPARATED_CODE = re.compile(r"(?<![\w-])(?=[^\s]*\d)(?=[^\s]*[^\W\d_])\w+(?:[-_./:#]+\w+)+")
# OCR confuses characters that look alike (O and 0, I, l and 1, S and 5, B and 8, Z and 2, G and
# 6). Each code read also gets a "look-alike key" that maps every such pair to one character,
# stored with its other spellings, and a code typed in a query is looked for by its key too:
# "SKU-1O473" as read (letter O) and "SKU-10473" as typed meet there, "SKU-10478" does not.
_LOOK_ALIKE = str.maketrans("oqilsbzg", "00115826")
LOOK_ALIKE_PREFIX = "lookalike"  # keeps keys apart from words anyone would type
# SQLite's FTS5 has no stop words; these few keep "a photo of the cat" from matching every row.
STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their then there "
    "these this to was were will with".split()
)
_WEBSEARCH_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


class KeywordRanking(list):
    """``(image id, score)`` pairs, best first. ``every_word``: whether they match the whole
    query, not one of its fallbacks (another spelling of its codes, any of its words)."""

    def __init__(self, pairs=(), *, every_word: bool = False):
        super().__init__(pairs)
        self.every_word = every_word


def keyword_ranking(text: str, limit: int) -> KeywordRanking:
    """Images whose title, tags or description match ``text`` (web search syntax), best first,
    as ``(image id, score)``; the score is the engine's own (ts_rank or -BM25; on SQLite, for a
    word too common to rank, falling with the order), higher is better, and only comparable
    within one answer. Hidden images are included: search drops them."""
    text = " ".join(text.split())
    if not text or limit <= 0:
        return KeywordRanking()
    first = {"postgresql": _postgres_first, "sqlite": _sqlite_first}.get(connection.vendor)
    if first is None:
        return KeywordRanking()
    found, which = first(_attempts(text), limit)
    return KeywordRanking(found, every_word=which == 0)


def _attempts(text: str):
    """The queries :func:`keyword_ranking` tries, in order, until one finds something: the whole
    query (every word), first; the look-alike keys of its codes; then, for plain words only (quotes,
    "or" and -exclusions say what was meant), any of its words, the rare ones first: a word in
    more images than are ranked says little about which one is meant, and beside it a rare word's
    older matches would fall outside the newest RANKED_MATCHES_MAX ("photo or lighthouse" would
    rank the newest photos only). A generator: SQLite asks for the next only when one found
    nothing (each costs a little); PostgreSQL asks all of them in one statement."""
    yield text
    if look_alikes := " or ".join(dict.fromkeys(look_alike_key(code) for code in codes_in(text))):
        yield look_alikes
    tokens, words = text.split(), re.findall(r"\w+", text)
    plain = '"' not in text and not any(token.lower() == "or" or token.startswith("-") for token in tokens)
    if not (plain and len(words) > 1):
        return
    common = _common_words(words)
    rare = [word for word in words if word not in common]
    if common and rare:
        yield " or ".join(rare)
    yield " or ".join(words)


def _common_words(words: list[str]) -> set[str]:
    """Of ``words``, those in more than RANKED_MATCHES_MAX images (on PostgreSQL: by ANALYZE's
    statistics); one query that does not grow with the gallery, none on PostgreSQL for a gallery
    too small to need a bound."""
    if connection.vendor == "postgresql":
        words = list(dict.fromkeys(words))
        if (found := _postgres_lexeme_shares(words)) is None:
            return set()
        per_word, rows = found
        return {word for word, shares in zip(words, per_word) if max(shares.values(), default=0.0) * rows > RANKED_MATCHES_MAX}
    checked = [word for word in dict.fromkeys(words) if word.lower() not in STOP_WORDS]
    phrases = {word: f'"{word}"' for word in checked}
    common = _sqlite_common(list(phrases.values()))
    return {word for word, phrase in phrases.items() if phrase in common}


def exact_matches(text: str, ranking: Iterable[tuple[int, float]]) -> set[int]:
    """Which of the best hits of ``ranking`` (:func:`keyword_ranking`'s for ``text``) carry the
    query exactly: a title equal to the whole query (case and spacing aside), or, when the query
    is a code like ``SKU-10482``, that code as a whole word in the title, the tags, the
    description or the text read in the picture (where "sku10482" also matches, through its
    spellings). Search puts these first.

    A title equal to the query holds every word of it, so hits of a fallback (any word) cannot
    have one: then only a code is looked for, and a sentence costs no query (0.75-1.05 ms of a
    search at a million images, read from scattered rows; 2 AMD EPYC cores with avx2 avx512f)."""
    ids = [pk for pk, _ in ranking][:EXACT_CANDIDATES]
    folded = " ".join(text.split()).casefold()
    code = folded if CODE.fullmatch(folded) else None
    # Plain (id, score) pairs (a slice of a ranking) do not say: their rows are read.
    every_word = ranking.every_word if isinstance(ranking, KeywordRanking) else True
    if not ids or not folded or not (code or every_word):
        return set()
    if not code:
        return {pk for pk, title in Image.objects.filter(pk__in=ids).values_list("pk", "title") if " ".join(title.split()).casefold() == folded}
    whole_word = re.compile(rf"(?<![\w-])(?:{re.escape(code)}|{look_alike_key(code)})(?![\w-])", re.IGNORECASE)
    return {
        pk
        for pk, title, tag_names, description, ocr_text, ocr_terms in Image.objects.filter(pk__in=ids).values_list(
            "pk", "title", "tag_names", "description", "ocr_text", "ocr_terms"
        )
        if " ".join(title.split()).casefold() == folded or whole_word.search(f"{title}\n{tag_names}\n{description}\n{ocr_text}\n{ocr_terms}")
    }


def images_reindex(ids: Iterable[int]) -> None:
    """Bring the full-text rows of these images up to date (call inside the writing
    transaction). PostgreSQL computes its vector from the row itself: nothing to do."""
    if connection.vendor != "sqlite":
        return
    for chunk in _chunks(ids):
        marks = ", ".join(["%s"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {FTS_TABLE} WHERE rowid IN ({marks})", chunk)
            cursor.execute(
                f"INSERT INTO {FTS_TABLE} (rowid, title, tags, description, text) "
                f"SELECT id, title, tag_names, description, ocr_text || ' ' || ocr_terms FROM gallery_image "
                f"WHERE id IN ({marks})",
                chunk,
            )


def images_forget(ids: Iterable[int]) -> None:
    """Drop the full-text rows of deleted images (search would skip them anyway)."""
    if connection.vendor != "sqlite":
        return
    for chunk in _chunks(ids):
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {FTS_TABLE} WHERE rowid IN ({', '.join(['%s'] * len(chunk))})", chunk)


def code_spellings(text: str) -> str:
    """The other spellings of the separated codes in ``text``, joined and spaced, one code a
    line: "SKU-10473 Trail Runner" gives "SKU10473 SKU 10473". Stored beside the text read
    (``Image.ocr_terms``), so both spellings match on both databases."""
    spellings = []
    for code in dict.fromkeys(_SEPARATED_CODE.findall(text)):
        parts = re.findall(r"[^\W_]+", code)
        spellings.append(f"{''.join(parts)} {' '.join(parts)}")
    # A code printed (or read) with a space, "SKU 10473": its joined spelling.
    for prefix, number in dict.fromkeys(_SPACED_CODE.findall(text)):
        spellings.append("".join(re.findall(r"[^\W_]+", prefix + number)))
    keys = dict.fromkeys(look_alike_key(code) for code in codes_in("\n".join([text, *spellings])))
    if keys:
        spellings.append(" ".join(keys))
    return "\n".join(spellings)


def codes_in(text: str) -> list[str]:
    """The words of ``text`` that are codes (letters and digits: "SKU-10473", "A7/B2")."""
    words = (word.strip(".,;:!?()[]{}'\"") for word in text.split())
    return [word for word in words if CODE.fullmatch(word)]


def look_alike_key(code: str) -> str:
    """One spelling for a code and its look-alike misreadings: "SKU-1O473" and "sku10473" both
    give "lookalike5ku10473"."""
    return LOOK_ALIKE_PREFIX + "".join(re.findall(r"[^\W_]+", code.casefold())).translate(_LOOK_ALIKE)


def matched_words(query: str, text: str) -> list[tuple[str, bool]]:
    """``text`` cut into words and the spaces between them, each marked whether it matches a
    word of ``query``: a part equal to a query word ("SKU-10473" for "sku"), the same code
    spelled otherwise ("SKU-10473" for "sku10473"), or a word starting with a query word of
    four letters or more (a rough stand-in for stemming: "runners" for "runner"). For showing
    why a result matched; search itself is the database's."""
    words = {word.casefold() for word in re.findall(r"[^\W_]+", query) if word.casefold() not in STOP_WORDS}
    joined = {"".join(re.findall(r"[^\W_]+", token)).casefold() for token in query.split()}
    out = []
    for token in re.split(r"(\s+)", text):
        if not token:
            continue
        parts = [part.casefold() for part in re.findall(r"[^\W_]+", token)]
        hit = bool(parts) and (
            any(part in words for part in parts)
            or "".join(parts) in joined
            or any(part.startswith(word) for part in parts for word in words if len(word) >= 4)
        )
        out.append((token, hit))
    return out


def _postgres_first(attempts: Iterable[str], limit: int) -> tuple[list[tuple[int, float]], int | None]:
    """The first of ``attempts`` that matches anything, ranked, and its place among them (None:
    none did), in one statement: each attempt's ranking runs only when those before it found
    nothing (``NOT EXISTS`` over an uncorrelated CTE is a one-time filter: PostgreSQL skips the
    scan), so a sentence's fallbacks cost no round trips of their own (a round trip cost 0.2-0.3
    ms beyond the database's own time at a million images, 2 AMD EPYC cores with avx2 avx512f
    avx512_vnni avx512_bf16); the newest id, which the bound of a word too common needs, is asked
    once at most. Plain SQL, as the QuerySet would write it (SearchRank: ts_rank of the stored
    document): compiling one cost more than running it (1.90 -> 0.63 ms a ranking at a million
    images, the same CPU)."""
    table, document = connection.ops.quote_name(Image._meta.db_table), connection.ops.quote_name(DOCUMENT_COLUMN)
    query = "websearch_to_tsquery(%s::regconfig, %s)"
    attempts = iter(attempts)
    whole = next(attempts)
    if _postgres_bounded():  # the words' shares will be asked: every new word's lexemes in one query
        _postgres_lexemes(list(dict.fromkeys([*_bound_words(whole), *re.findall(r"\w+", whole)])))
    attempts = [whole, *attempts]
    newest = cache(_postgres_newest_id)  # asked once, only when an attempt needs a bound
    rankings, params = [], []
    for n, text in enumerate(attempts):
        # The bound is a constant: as a subquery PostgreSQL plans it blind, and for a word in every
        # title of a million images chose a parallel scan of the table (1.1 s against 18 ms, 2 AMD
        # EPYC cores with avx2 avx512f avx512_vnni avx512_bf16).
        oldest = _postgres_newest_bound(text, newest)
        rankings.append(
            f"r{n} AS MATERIALIZED (SELECT id, ts_rank({document}, {query}) AS rank FROM {table} "
            f"WHERE {document} @@ {query}" + "".join(f" AND NOT EXISTS (SELECT FROM r{m})" for m in range(n))
            + (" AND id > %s" if oldest is not None else "") + " ORDER BY rank DESC, id LIMIT %s)"
        )
        params += [TEXT_CONFIG, text, TEXT_CONFIG, text, *([oldest] if oldest is not None else []), limit]
    union = " UNION ALL ".join(f"SELECT {n}, id, rank FROM r{n}" for n in range(len(attempts)))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(rankings)} {union} ORDER BY 1, 3 DESC, 2", params)
        rows = cursor.fetchall()
    return [(pk, float(rank)) for _, pk, rank in rows], rows[0][0] if rows else None


def _postgres_newest_bound(text: str, newest: Callable[[], int] | None = None) -> int | None:
    """The id past which about the newest RANKED_MATCHES_MAX matches of ``text`` lie, or None
    when fewer match. PostgreSQL cannot walk a GIN index's matches newest first, so the share of
    images that match is estimated from the lexeme frequencies ANALYZE keeps for the document
    (a word missing from them is rarer than every word kept, so a query that needs it is small),
    and the newest images are assumed to hold their share: the bound is the newest id minus
    RANKED_MATCHES_MAX / share, one range on the primary key beside the GIN match."""
    if (found := _postgres_lexeme_shares(_bound_words(text))) is None:
        return None  # no statistics yet, or too few images to need a bound
    per_word, rows = found
    shares = list({lexeme: share for word in per_word for lexeme, share in word.items()}.values())  # each lexeme once
    either = any(token.lower() == "or" for token in text.split())
    share = min(1.0, sum(shares)) if either else min(shares, default=0.0)
    if share * rows <= RANKED_MATCHES_MAX:
        return None
    return int((newest or _postgres_newest_id)() - RANKED_MATCHES_MAX / share)


def _bound_words(text: str) -> list[str]:
    """The words of ``text`` whose shares bound its matches: not ``or``, not an exclusion."""
    return [token for token in text.split() if token.lower() != "or" and not token.startswith("-")]


def _postgres_newest_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(id) FROM {connection.ops.quote_name(Image._meta.db_table)}")
        return cursor.fetchone()[0] or 0


def _postgres_lexeme_shares(words: list[str]) -> tuple[list[dict[str, float]], float] | None:
    """(for each of ``words``, {lexeme: share of images holding it} (``english``
    stemming; none for a stop word), the table's row estimate), from what ANALYZE keeps for the
    document column: a lexeme missing from its most common ones is rarer than all of them, and
    counts 0. None when no word can be too common to rank: no statistics yet, or no more images
    than RANKED_MATCHES_MAX. The one place both bounds read the statistics; one query."""
    if not _postgres_bounded() or not words:
        return None
    common, rows = _postgres_word_statistics()
    return [{lexeme: common.get(lexeme, 0.0) for lexeme in lexemes} for lexemes in _postgres_lexemes(words)], rows


def _postgres_bounded() -> bool:
    """Whether a word can be too common to rank all its matches: ANALYZE has counted the
    document's words, in more images than RANKED_MATCHES_MAX."""
    common, rows = _postgres_word_statistics()
    return bool(common) and rows > RANKED_MATCHES_MAX


# A word of ASCII letters and digits with a digit in it ("2019", "a7", "r5f3a") is its own lexeme,
# lower-cased: the parser calls it a number (uint) or a numword, which the english configuration
# maps to the simple dictionary (no stemming, no stop words). Asked of no database: codes and
# numbers are what people type new most often. Not one starting like a number in scientific
# notation ("12e5x" parses as "12e5" and "x"); tests/test_hybrid.py checks the rule against
# to_tsvector.
_OWN_LEXEME = re.compile(r"(?![0-9]+[eE][0-9])[a-zA-Z0-9]*[0-9][a-zA-Z0-9]*")
_lexemes_lock = threading.Lock()
_lexemes: LRUCache = LRUCache(maxsize=50_000)  # word -> its lexemes (they never change)


def _postgres_lexemes(words: list[str]) -> list[tuple[str, ...]]:
    """Each word's lexemes (``english`` stemming; none for a stop word), from the database's
    ``to_tsvector``, asked once per word and process (a sentence the words' fallback answers
    asks for the same words' shares two or three times), and never for a word with a digit
    (:data:`_OWN_LEXEME`)."""
    with _lexemes_lock:
        held = {word: _lexemes.get(word) for word in words}
    for word in words:
        if held[word] is None and _OWN_LEXEME.fullmatch(word):
            held[word] = (word.lower(),)
    missing = [word for word, lexemes in held.items() if lexemes is None]
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT tsvector_to_array(to_tsvector('{TEXT_CONFIG}', word)) "
                "FROM unnest(%s::text[]) WITH ORDINALITY AS t(word, n) ORDER BY n",
                [missing],
            )
            found = [tuple(lexemes or ()) for (lexemes,) in cursor.fetchall()]
        with _lexemes_lock:
            for word, lexemes in zip(missing, found):
                _lexemes[word] = held[word] = lexemes
    return [held[word] for word in words]


_statistics_lock = threading.Lock()
_statistics: tuple[float, dict[str, float], float] | None = None


def _postgres_word_statistics() -> tuple[dict[str, float], float]:
    """({lexeme: share of the images holding it} for the most common ones, the table's row
    estimate), from pg_stats (the document column's) and pg_class; ({}, 0) before ANALYZE has
    run. Kept per process."""
    global _statistics
    now = time.monotonic()
    with _statistics_lock:
        if _statistics is not None and now - _statistics[0] < _STATISTICS_SECONDS:
            return _statistics[1], _statistics[2]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs, "
            "(SELECT reltuples FROM pg_class WHERE relname = %s) FROM pg_stats WHERE tablename = %s AND attname = %s",
            [Image._meta.db_table, Image._meta.db_table, DOCUMENT_COLUMN],
        )
        row = cursor.fetchone()
    common, rows = ({}, 0.0) if row is None or not row[0] else (dict(zip(row[0], row[1])), float(row[2] or 0))
    with _statistics_lock:
        _statistics = (now, common, rows)
    return common, rows


def forget_statistics() -> None:
    """Drop the word statistics and counts held (tests; they are read again on the next search)."""
    global _statistics
    with _statistics_lock:
        _statistics = None
    with _counts_lock:
        _counts.clear()
    with _lexemes_lock:
        _lexemes.clear()


def _sqlite_first(attempts: Iterable[str], limit: int) -> tuple[list[tuple[int, float]], int | None]:
    """The first of ``attempts`` that matches anything, ranked, and its place among them (None:
    none did): one at a time, since a query costs SQLite no round trip, and the next attempt's
    question (which words are too common) is asked only when needed."""
    for n, text in enumerate(attempts):
        if found := _sqlite(text, limit):
            return found, n
    return [], None


def _sqlite(text: str, limit: int) -> list[tuple[int, float]]:
    positive, negative = _fts5_parts(text)
    match = _fts5_expression(positive, negative)
    if not match:
        return []
    if _sqlite_common(_PHRASE.findall(match)):
        return _sqlite_by_field(match, positive, negative, limit)
    weights = ", ".join(str(weight) for weight in FTS5_WEIGHTS)
    # The newest RANKED_MATCHES_MAX matches at most: the subquery walks FTS5's index by rowid to
    # the oldest of them without scoring anything (about 1 ms), and BM25 scores only those.
    newest = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s ORDER BY rowid DESC LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rowid, -bm25({FTS_TABLE}, {weights}) AS score FROM {FTS_TABLE} "
            f"WHERE {FTS_TABLE} MATCH %s AND rowid >= (SELECT min(rowid) FROM ({newest})) "
            "ORDER BY score DESC, rowid LIMIT %s",
            [match, match, RANKED_MATCHES_MAX, limit],
        )
        return [(pk, float(score)) for pk, score in cursor.fetchall()]


def _sqlite_by_field(match: str, positive: str, negative: list[str], limit: int) -> list[tuple[int, float]]:
    """The newest RANKED_MATCHES_MAX matches of a query with a phrase in more images than that,
    ordered by the field that holds the whole query, in the order of BM25's field weights (the
    title first, then the tags, the description; then the rest, whose words are spread over
    fields or in the text read), newest first within each; scores fall with the order. BM25 cannot
    rank them: it counts every image holding each phrase first (for its rarity), a walk over all
    of a common word's matches on every search (21 ms of the 30 that "photo" cost in a million
    titles, against 7 ms at 10,000; AMD EPYC, 2 cores, AVX-512). Each walk here stops at the
    bound: the same cost at any size. ``match`` is the whole query, made of its two parts."""
    newest = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s ORDER BY rowid DESC LIMIT %s"
    # Ascending from the bound, then sorted (``rowid + 0``: not FTS5's order): walking down, FTS5
    # does not stop at a lower rowid bound (24-42 ms in a million rows for a field without the word, AMD EPYC).
    walk = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s AND rowid >= %s ORDER BY rowid + 0 DESC LIMIT %s"
    ranked: dict[int, None] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(rowid) FROM ({newest})", [match, RANKED_MATCHES_MAX])
        (oldest,) = cursor.fetchone()
        for column in [*FTS_COLUMNS[:-1], None] if oldest is not None else []:  # the last field's among any field's
            if len(ranked) >= limit:
                break  # the fields before gave enough: "photo" in every title costs one walk
            cursor.execute(walk, [_fts5_expression(positive, negative, column=column), oldest, limit])
            ranked.update((pk, None) for (pk,) in cursor.fetchall() if pk not in ranked)
    found = list(ranked)[:limit]
    return [(pk, float(len(found) - n)) for n, pk in enumerate(found)]


_PHRASE = re.compile(r'"[^"]*"')
_counts_lock = threading.Lock()
# (phrase, bound) -> its matches up to bound + 1, for _STATISTICS_SECONDS; past 50,000 phrases
# the least recently used go first.
_counts: TTLCache = TTLCache(maxsize=50_000, ttl=_STATISTICS_SECONDS, timer=time.monotonic)


def _sqlite_common(phrases: list[str]) -> set[str]:
    """Of these FTS5 phrases (``'"photo"'``), those in more than RANKED_MATCHES_MAX images.
    FTS5 counts each to one past the bound (a walk of its index that stops there: about 1 ms at
    a million images, AMD EPYC); a process keeps the counts _STATISTICS_SECONDS, as PostgreSQL's
    statistics are kept, so a word it has seen costs nothing."""
    bound = RANKED_MATCHES_MAX
    phrases = list(dict.fromkeys(phrases))
    with _counts_lock:
        held = {phrase: _counts.get((phrase, bound)) for phrase in phrases}
    missing = [phrase for phrase, matches in held.items() if matches is None]
    if missing:
        count = f"(SELECT count(*) FROM (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s LIMIT %s))"
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join([count] * len(missing)), [value for phrase in missing for value in (phrase, bound + 1)])
            counted = cursor.fetchone()
        with _counts_lock:
            for phrase, matches in zip(missing, counted):
                _counts[(phrase, bound)] = held[phrase] = matches
    return {phrase for phrase, matches in held.items() if matches > bound}


def _fts5_parts(text: str) -> tuple[str, list[str]]:
    """PostgreSQL's websearch syntax in FTS5's query language, in two parts: what must match, and
    the phrases excluded (:func:`_fts5_expression` joins them). Words are all required, "quoted
    words" are a phrase, ``or`` between two terms makes either enough, ``-word`` excludes. Every
    term is quoted, so nothing the user types is FTS5 syntax; a word with inner punctuation
    (``SKU-10482``) is a phrase of its parts, as PostgreSQL treats it. Stop words are dropped
    unless nothing else is left. ("", []) when nothing is searchable: only exclusions, which FTS5
    cannot match alone."""
    terms: list[tuple[str, str]] = []  # (kind, fts5 expression): kind is "and", "or" or "not"
    joiner = "and"
    for negated, phrase, bare in _WEBSEARCH_TOKEN.findall(text):
        if not phrase and bare.lower() == "or":
            joiner = "or" if terms else "and"
            continue
        negated = negated or (bare.startswith("-") and len(bare) > 1)
        words = re.findall(r"\w+", phrase if phrase else bare)
        if not phrase and len(words) == 1 and words[0].lower() in STOP_WORDS and not negated:
            continue
        if words:
            expression = '"' + " ".join(words) + '"'
            terms.append(("not" if negated else joiner, expression))
        joiner = "and"
    positive = [(kind, expression) for kind, expression in terms if kind != "not"]
    if not positive and terms:
        return "", []  # only exclusions: FTS5 has no "every image but" (CLIP still ranks the query)
    if not positive:
        words = [word for word in re.findall(r"\w+", text) if word.lower() != "or"]
        return " AND ".join(f'"{word}"' for word in words), []  # only stop words
    out = positive[0][1]
    for kind, expression in positive[1:]:
        out += f" {kind.upper()} {expression}"
    return out, [expression for kind, expression in terms if kind == "not"]


def _fts5_expression(positive: str, negative: list[str], *, column: str | None = None) -> str:
    """The FTS5 query of :func:`_fts5_parts`' parts; with ``column``, what must match must
    match in that column."""
    if positive and column:
        positive = f"{{{column}}} : ({positive})"
    return f"({positive})" + "".join(f" NOT {expression}" for expression in negative) if negative else positive


def _chunks(ids: Iterable[int], size: int = 500):
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def text_read_matches(query: str, ocr_text: str) -> list[list[tuple[str, bool]]]:
    """The lines of the text read in a picture that hold a word of ``query``, cut into marked
    words (:func:`matched_words`): what a result shows to say why its words matched."""
    if not query or not ocr_text:
        return []
    lines = (matched_words(query, line) for line in ocr_text.splitlines())
    return [line for line in lines if any(hit for _, hit in line)]

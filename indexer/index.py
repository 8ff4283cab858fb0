"""Annoy indexes: build, publish as an immutable version directory, load memory-mapped, query.

A version directory holds these files:

- ``index-reduced.ann`` or ``index.ann``: the Annoy forest over items 0..n-1 (Annoy reserves
  room for the largest item id, so items are numbered densely rather than by database key),
  numbered in a spatial order (:func:`spatial_order`) so that near vectors lie near each other
  in the file; over the vectors' first principal components (:data:`REDUCED_DIMS`), or over the
  whole vectors (``index.ann``, the only forest that code from before the components knows: it
  finds none in a version over components and keeps serving the one it has);
- ``ids.npy``: item number -> external id (the ``Image`` primary key);
- ``projection.npy`` and ``vectors.npy``, in a version over principal components only: the
  projection (dimensions x components) and the whole unit vectors by item number, which re-rank
  the forest's candidates exactly (:meth:`SearchIndex.query`);
- ``manifest.json``: model, dimension, metric, trees, count, checksums, creation time, and the
  ``search_k`` this version is queried with (chosen at build by measured recall: :func:`tune_search_k`).

Directories are written under a temporary name and renamed, so a reader sees a whole version
or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import MISSING, asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

METRIC = "angular"
REDUCED_METRIC = "dot"  # a projection keeps the ranking by inner product, not the vectors' lengths
INDEX_FILE = "index.ann"
REDUCED_INDEX_FILE = "index-reduced.ann"
IDS_FILE = "ids.npy"
PROJECTION_FILE = "projection.npy"
VECTORS_FILE = "vectors.npy"
MANIFEST_FILE = "manifest.json"
# Every name a version may hold, the manifest last (its presence means complete); a version holds
# one forest or the other, and the projection and whole vectors with the reduced one.
FILES = (INDEX_FILE, REDUCED_INDEX_FILE, IDS_FILE, PROJECTION_FILE, VECTORS_FILE, MANIFEST_FILE)
REDUCED_FILES = (REDUCED_INDEX_FILE, PROJECTION_FILE, VECTORS_FILE)  # only in a version over principal components
OPTIONAL_FILES = (INDEX_FILE, *REDUCED_FILES)  # what one version holds and another does not

# Annoy's default search_k (k * n_trees) finds only 20-50% of the true top 10 among 100k
# 512-d vectors. Inspecting tens of thousands of nodes reaches ~98% at a few milliseconds
# (docs/performance.md has the table these defaults come from).
DEFAULT_TREES = 50
DEFAULT_SEARCH_K = 20_000  # for a version whose manifest has no measured choice (built before it)
# How many nodes a query inspects is chosen per version at build (:func:`tune_search_k`): the
# fewest of SEARCH_K_CHOICES that find RECALL_TARGET of the true top 10. What that takes
# depends on the vectors and their number (clip-like ones over principal components: 3,500 nodes
# at 10,000, 5,000-7,000 at a million), and it is most of a query's time: a fixed 20,000 cost a
# million-image gallery 3.4 ms a query where 10,000 nodes take 1.5 ms (AMD EPYC, 2 cores,
# avx2 avx512f; docs/performance.md section 22). The choices grow by at most 1.43x: doubling
# steps chose up to twice the nodes the target needs (a million-image gallery's forest reached
# 0.98 at 7,000 nodes but got 10,000: 2.3 ms a query instead of 1.8, Intel Xeon, 2 cores,
# avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16; section 29).
SEARCH_K_CHOICES = (1_000, 1_500, 2_000, 2_500, 3_500, 5_000, 7_000, 10_000, 14_000, 20_000, 28_000, 40_000)
RECALL_TARGET = 0.98
TUNING_QUERIES = 200
# A query reads the vectors of the candidates it scores (thousands), 2 KB each (512-d). Items stored
# in a spatial order (neighbours in the same stretch of the file) turn those scattered reads
# into runs: at a million clip-like vectors on 2 AMD EPYC cores, p50 3.7 -> 2.9 ms and p90
# 8.9 -> 6.2 ms per query, the same recall, and the build 18% faster (docs/performance.md).
LAYOUT_LEAF = 256  # items per stretch that the order leaves unsorted
LAYOUT_DIMS = 32  # the order is computed on a random projection to this many dimensions
# Each node a query inspects costs a read from memory at a million vectors (0.28 us a node
# against 0.08 at 10,000: they no longer fit the CPU's cache), so a query's time is the nodes
# it needs. A forest over the vectors' first 128 principal components, whose candidates are
# re-ranked by the whole vectors, needs half the nodes for the same recall: at a million
# CLIP-shaped vectors 0.988 of the true top 10 in 1.06 ms (5,000 nodes) against 0.991 in 1.92
# ms (10,000) over the whole vectors, and a build 2.5x shorter (2 AMD EPYC cores with avx2
# avx512f; docs/performance.md, sections 26 and 27). How real vectors spread over their
# components is measured at each build: a reduced forest that misses the recall target is
# replaced by one over the whole vectors.
REDUCED_DIMS = 128
# The forest's candidates re-ranked per query: twice the results asked for, at least 320 (a
# search asks for 320), so that the deeper results are re-ranked from more than themselves
# (:func:`rerank_candidates`).
RERANK_CANDIDATES = 320
# A reduced forest that needs more nodes than this (what forests over the whole vectors needed
# at 10,000 to a million CLIP-shaped vectors) is compared with one over the whole vectors, built
# too, and the one with fewer nodes for the target is kept.
COMPARE_ABOVE_NODES = 10_000
PROJECTION_SAMPLE = 50_000  # vectors the principal components are computed on
_BLOCK = 65_536  # vectors reordered (and projected) at a time while a build writes them

logger = logging.getLogger(__name__)


class IndexFileError(Exception):
    """Base of the errors below."""


class IndexCorrupt(IndexFileError):
    pass


class IndexMismatch(IndexFileError):
    """The index was built for another model than the one asked to query it."""


@dataclass(frozen=True)
class Manifest:
    version: str
    model: str
    dim: int
    metric: str
    n_trees: int
    item_count: int
    checksum: str  # sha256 of index.ann
    ids_checksum: str  # sha256 of ids.npy
    created_at: str  # ISO 8601, UTC
    build_seconds: float
    # Chosen at build (tune_search_k) with the recall it measured; 0 in a version built before
    # that was measured, which is queried with DEFAULT_SEARCH_K.
    search_k: int = 0
    measured_recall: float = 0.0
    # The forest's dimensions when it is over principal components (its candidates re-ranked by
    # the whole vectors, REDUCED_FILES); 0: over the whole vectors, as every version before.
    reduced_dim: int = 0
    projection_checksum: str = ""
    vectors_checksum: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        """The files this version holds, the manifest last."""
        held = REDUCED_FILES if self.reduced_dim else (INDEX_FILE,)
        return tuple(name for name in FILES if name in held or name not in OPTIONAL_FILES)

    @property
    def forest_file(self) -> str:
        return REDUCED_INDEX_FILE if self.reduced_dim else INDEX_FILE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        try:
            return cls(**{name: data[name] for name, field in cls.__dataclass_fields__.items() if name in data or field.default is MISSING})
        except KeyError as exc:
            raise IndexCorrupt(f"manifest lacks {exc}") from None

    def check_model(self, model: str) -> None:
        check_model(version=self.version, built_with=self.model, model=model)


def check_model(*, version: str, built_with: str, model: str) -> None:
    """Queries may come from another runtime of the same model (``#onnx-int8`` and the like:
    `verify_onnx` shows they agree); another model or weights are refused. Shared by every
    index backend (indexer.backends)."""
    if model.split("#")[0] != built_with.split("#")[0]:
        raise IndexMismatch(
            f"Index version {version} holds vectors of {built_with}, but the configured "
            f"model is {model}. Rebuild the index with the configured model (embed and build), "
            "or set CLIP_MODEL/CLIP_PRETRAINED back to the model the index was built with."
        )


def new_version_name(now: datetime | None = None) -> str:
    """Sortable, unique: ``20261124T141500Z-3f9a1c``."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def build_index(
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    model: str,
    out_dir: Path,
    n_trees: int = DEFAULT_TREES,
    version: str | None = None,
    n_jobs: int = -1,
    recall_target: float = RECALL_TARGET,
    reduced_dims: int = REDUCED_DIMS,
) -> Manifest:
    """Build a version directory ``out_dir/<version>`` from external ids and their vectors; its
    ``search_k`` is the fewest nodes that find ``recall_target`` of the true top 10 (:func:`tune_search_k`).
    The forest is over the vectors' first ``reduced_dims`` principal components when they have
    more (0: never); when that forest misses ``recall_target`` or needs more than
    COMPARE_ABOVE_NODES, one over the whole vectors is built too and :func:`prefer_whole` keeps one."""
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"need one vector per id, got {len(ids)} ids and {vectors.shape} vectors")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids must be unique")
    version = version or new_version_name()
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out_dir))
    try:
        order = spatial_order(vectors)
        # Components need more vectors than dimensions to mean anything.
        reduce = 0 < reduced_dims < vectors.shape[1] and len(vectors) > 4 * vectors.shape[1]
        if reduce:
            search_k, recall = _build_reduced(work, vectors, order, reduced_dims, n_trees=n_trees, n_jobs=n_jobs, target=recall_target)
            if recall < recall_target or search_k > COMPARE_ABOVE_NODES:
                whole_k, whole_recall = _build_forest(work, vectors, order, None, n_trees=n_trees, n_jobs=n_jobs, target=recall_target)
                if prefer_whole((search_k, recall), (whole_k, whole_recall), recall_target):
                    logger.warning(
                        "index %s: over %d principal components queries need %d nodes for %.3f of the true top 10, over "
                        "the whole vectors %d nodes for %.3f (target %.3f): built over the whole vectors",
                        version, reduced_dims, search_k, recall, whole_k, whole_recall, recall_target,
                    )
                    search_k, recall, reduce = whole_k, whole_recall, False
                for name in (INDEX_FILE,) if reduce else REDUCED_FILES:
                    (work / name).unlink()
        else:
            search_k, recall = _build_forest(work, vectors, order, None, n_trees=n_trees, n_jobs=n_jobs, target=recall_target)
        forest_file = REDUCED_INDEX_FILE if reduce else INDEX_FILE
        logger.info("index %s: queries inspect %d nodes, which find %.3f of the true top 10 (target %.3f)", version, search_k, recall, recall_target)
        ids = ids[order]
        np.save(work / IDS_FILE, ids)
        manifest = Manifest(
            version=version,
            model=model,
            dim=int(vectors.shape[1]),
            metric=REDUCED_METRIC if reduce else METRIC,
            n_trees=n_trees,
            item_count=len(ids),
            checksum=file_sha256(work / forest_file),
            ids_checksum=file_sha256(work / IDS_FILE),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
            search_k=search_k,
            measured_recall=round(recall, 4),
            reduced_dim=reduced_dims if reduce else 0,
            projection_checksum=file_sha256(work / PROJECTION_FILE) if reduce else "",
            vectors_checksum=file_sha256(work / VECTORS_FILE) if reduce else "",
        )
        (work / MANIFEST_FILE).write_text(manifest.to_json())
        os.rename(work, out_dir / version)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def prefer_whole(reduced: tuple[int, float], whole: tuple[int, float], target: float) -> bool:
    """Whether a forest over the whole vectors beats one over principal components, each given
    as (nodes per query, recall) as measured: the one that meets the target; both, the one with
    fewer nodes; neither, the better recall. A tie keeps the reduced forest (its nodes are a
    quarter of the size)."""
    (reduced_k, reduced_recall), (whole_k, whole_recall) = reduced, whole
    if (whole_recall >= target) != (reduced_recall >= target):
        return whole_recall >= target
    return whole_k < reduced_k if whole_recall >= target else whole_recall > reduced_recall


def _build_reduced(
    work: Path, vectors: np.ndarray, order: np.ndarray, dims: int, *, n_trees: int, n_jobs: int, target: float
) -> tuple[int, float]:
    """A forest over the first ``dims`` principal components in ``work``, with the projection
    and the whole unit vectors by item number that re-rank its candidates; its search_k and recall."""
    projection = np.ascontiguousarray(principal_axes(vectors)[:dims].T, dtype=np.float32)
    np.save(work / PROJECTION_FILE, projection)
    # Written in item order, a block at a time: a million 512-d vectors are 2 GB, and a whole
    # reordered copy would double the build's memory.
    whole = np.lib.format.open_memmap(work / VECTORS_FILE, mode="w+", dtype=np.float32, shape=vectors.shape)
    for start in range(0, len(order), _BLOCK):
        whole[start : start + _BLOCK] = _unit(vectors[order[start : start + _BLOCK]])
    whole.flush()
    return _build_forest(work, vectors, order, projection, whole=whole, n_trees=n_trees, n_jobs=n_jobs, target=target)


def _build_forest(
    work: Path, vectors: np.ndarray, order: np.ndarray, projection: np.ndarray | None, *, whole: np.ndarray | None = None,
    n_trees: int, n_jobs: int, target: float,
) -> tuple[int, float]:
    """The Annoy forest in ``work`` (``index.ann``; ``index-reduced.ann`` over ``projection``,
    when given) over the vectors in ``order``; the nodes its queries inspect and the recall they
    measured."""
    from annoy import AnnoyIndex

    forest = AnnoyIndex(vectors.shape[1] if projection is None else projection.shape[1], METRIC if projection is None else REDUCED_METRIC)
    forest.on_disk_build(str(work / (INDEX_FILE if projection is None else REDUCED_INDEX_FILE)))  # pages out to the file, not to RAM
    for start in range(0, len(order), _BLOCK):
        block = vectors[order[start : start + _BLOCK]]
        # Lists: Annoy reads an array item by item, each a new numpy scalar. Projected as unit
        # vectors: by inner product a longer vector would rank higher.
        for item, vector in enumerate((block if projection is None else _unit(block) @ projection).tolist(), start):
            forest.add_item(item, vector)
    forest.build(n_trees, n_jobs)
    try:
        return tune_search_k(forest, vectors, order, target=target, rerank=whole)
    finally:
        forest.unload()


def principal_axes(vectors: np.ndarray, *, sample: int = PROJECTION_SAMPLE, seed: int = 0) -> np.ndarray:
    """The vectors' principal axes (rows, largest variance first), from a uniform sample (about
    a second for 50,000 512-d vectors)."""
    rows = np.random.default_rng(seed).choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    picked = _unit(vectors[np.sort(rows)])
    return np.linalg.svd(picked - picked.mean(axis=0), full_matrices=False)[2]


def spatial_order(vectors: np.ndarray, *, leaf: int = LAYOUT_LEAF, dims: int = LAYOUT_DIMS, seed: int = 0) -> np.ndarray:
    """A permutation of the rows that puts near vectors near each other: the leaf order of a
    tree of median splits, each along the line between two random rows of its part (as Annoy
    splits, but balanced), computed on a random projection of the vectors to ``dims``
    dimensions (distances roughly kept, a sixteenth of the work). About 2.4 s for a million
    512-d vectors. Deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    order = np.arange(len(vectors))
    if len(vectors) <= leaf:
        return order
    low = np.asarray(vectors, dtype=np.float32) @ rng.standard_normal((vectors.shape[1], dims)).astype(np.float32)
    parts = [(0, len(order))]
    while parts:
        start, stop = parts.pop()
        if stop - start <= leaf:
            continue
        part = order[start:stop]
        a, b = rng.integers(0, stop - start, size=2)
        middle = (stop - start) // 2
        order[start:stop] = part[np.argpartition(low[part] @ (low[part[a]] - low[part[b]]), middle)]
        parts += [(start, start + middle), (start + middle, stop)]
    return order


def tune_search_k(
    forest, vectors: np.ndarray, order: np.ndarray, *, target: float = RECALL_TARGET,
    choices: tuple[int, ...] = SEARCH_K_CHOICES, queries: int = TUNING_QUERIES, seed: int = 0,
    rerank: np.ndarray | None = None,
) -> tuple[int, float]:
    """The smallest of ``choices`` whose recall@10 reaches ``target`` on this built ``forest``
    (item ``i`` holds ``vectors[order[i]]``, or its principal components when ``rerank`` holds
    the whole unit vectors by item number, which re-rank the forest's candidates as queries do),
    and that recall; the largest choice and its recall when none does. Measured leave-one-out, as "more like this" asks: ``queries``
    stored vectors each look for their 10 nearest others, against an exact search (one matrix
    product over the vectors: 3.6 s of the whole 5.6 s for a million 512-d ones on 2 AMD EPYC
    cores with AVX-512); a hit counts if it is as near
    as the true 10th (a duplicate image is as right as its twin). A query's candidates depend on
    ``search_k`` alone, so its top 10 is as good whatever the number of results asked; deeper
    results (a search asks for 320) are found with less recall."""
    count = len(vectors)
    if count <= 10:
        return choices[0], 1.0  # every item is in every top 10
    rows_of_items = np.asarray(order)
    items = np.random.default_rng(seed).choice(count, size=min(queries, count), replace=False)
    rows = rows_of_items[items]
    tenth = _kth_nearest_score(vectors, rows, 10)
    unit = _unit(vectors[rows])
    recall = 0.0
    for search_k in choices:
        found = 0
        for n, item in enumerate(items.tolist()):
            if rerank is None:
                got = forest.get_nns_by_item(item, 11, search_k=search_k)
            else:
                candidates = np.asarray(forest.get_nns_by_item(item, rerank_candidates(11), search_k=search_k), dtype=np.int64)
                got = candidates[np.argsort(-(rerank[candidates] @ unit[n]), kind="stable")[:11]].tolist()
            got = [other for other in got if other != item][:10]
            found += int(np.count_nonzero(_unit(vectors[rows_of_items[got]]) @ unit[n] >= tenth[n] - 1e-5))
        recall = found / (10 * len(items))
        if recall >= target:
            return search_k, recall
    logger.warning("no search_k of %s finds %.3f of the true top 10: queries inspect %d nodes, which find %.3f", choices, target, search_k, recall)
    return search_k, recall


def rerank_candidates(k: int) -> int:
    """How many candidates a query for ``k`` results asks a forest over principal components for,
    to re-rank by the whole vectors: the one rule for queries, the build's tuning and benchmarks."""
    return max(2 * k, RERANK_CANDIDATES)


def _kth_nearest_score(vectors: np.ndarray, rows: np.ndarray, k: int, *, block: int = _BLOCK) -> np.ndarray:
    """For each of ``rows``, the cosine of its vector with the ``k``-th nearest other vector."""
    queries = _unit(vectors[rows])
    best = np.full((len(rows), k), -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), block):
        scores = queries @ _unit(vectors[start : start + block]).T
        own = np.flatnonzero((rows >= start) & (rows < start + scores.shape[1]))
        scores[own, rows[own] - start] = -np.inf  # itself
        best = np.concatenate([best, scores], axis=1)
        best = -np.partition(-best, k - 1, axis=1)[:, :k]
    return best.min(axis=1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (Annoy's angular metric does the same)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class SearchIndex:
    """A loaded, memory-mapped version: every process on a host shares the pages."""

    def __init__(self, directory: Path, *, verify: bool = True, prefault: bool = False):
        from annoy import AnnoyIndex

        self.directory = Path(directory)
        try:
            self.manifest = Manifest.from_json((self.directory / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"cannot read the manifest in {self.directory}: {exc}") from exc
        if verify:
            verify_files(self.directory, self.manifest)
        self.ids = np.load(self.directory / IDS_FILE, mmap_mode="r")
        if len(self.ids) != self.manifest.item_count:
            raise IndexCorrupt(f"{self.directory}: ids.npy does not match the manifest's count")
        self._forest = AnnoyIndex(self.manifest.reduced_dim or self.manifest.dim, self.manifest.metric)
        # Over principal components: the projection of a query, and the whole vectors that
        # re-rank the candidates (memory-mapped: a query reads its 320 rows).
        self._projection = self._whole = None
        if self.manifest.reduced_dim:
            self._projection = np.load(self.directory / PROJECTION_FILE)
            self._whole = _map_array(self.directory / VECTORS_FILE, prefault=prefault)
            if self._whole.shape != (self.manifest.item_count, self.manifest.dim):
                raise IndexCorrupt(f"{self.directory}: {VECTORS_FILE} does not match the manifest's count and dimension")
        if self.manifest.item_count:
            # mmap. ``prefault`` maps every page at load (MAP_POPULATE: about 50 ms for a 1M
            # index already in the page cache) instead of on first touch, where each query with
            # a new vector paid for the thousands of pages it reads (1M, 512-d: p50 19 -> 10 ms).
            self._forest.load(str(self.directory / self.manifest.forest_file), prefault=prefault)

    @property
    def version(self) -> str:
        return self.manifest.version

    def __len__(self) -> int:
        return self.manifest.item_count

    @property
    def search_k(self) -> int:
        """The nodes a query inspects: as measured at build, or DEFAULT_SEARCH_K for an older version."""
        return self.manifest.search_k or DEFAULT_SEARCH_K

    def query(self, vector: np.ndarray, k: int, *, search_k: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest (external id, cosine similarity) pairs, best first. ``search_k``: the
        nodes to inspect, if not the version's own (:attr:`search_k`)."""
        vector = np.asarray(vector, dtype=np.float32).ravel()
        if vector.shape[0] != self.manifest.dim:
            raise IndexMismatch(
                f"query has {vector.shape[0]} dimensions, index {self.version} has {self.manifest.dim}"
            )
        if not len(self) or k <= 0:
            return []
        search_k = search_k or self.search_k
        if self._projection is not None:
            return self._query_reranked(vector, k, search_k)
        # Twice k at least: the candidates a tree walk gathers repeat across trees, and k
        # results need k distinct ones.
        # A list: Annoy reads its argument item by item, and each item of an array is a new
        # numpy scalar (~25 us of 512 of them, 2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16).
        items, distances = self._forest.get_nns_by_vector(vector.tolist(), k, search_k=max(search_k, 2 * k), include_distances=True)
        # Annoy's angular distance is sqrt(2 - 2 cos) between normalised vectors. The ids are
        # read in one gather (one memmap lookup per hit cost ~1 ms for 320 hits).
        ids = self.ids[np.asarray(items, dtype=np.int64)].tolist()
        scores = (1.0 - np.square(np.asarray(distances, dtype=np.float64)) / 2.0).tolist()
        return list(zip(ids, scores))

    def _query_reranked(self, vector: np.ndarray, k: int, search_k: int) -> list[tuple[int, float]]:
        """The forest's nearest in principal components (:func:`rerank_candidates`), re-ranked by
        their whole vectors: the best ``k``, their scores the exact cosines."""
        wanted = rerank_candidates(k)
        vector = _unit(vector)
        items = self._forest.get_nns_by_vector((vector @ self._projection).tolist(), wanted, search_k=max(search_k, 2 * wanted))
        items = np.asarray(items, dtype=np.int64)
        scores = self._whole[items] @ vector
        best = np.argsort(-scores, kind="stable")[:k]
        return list(zip(self.ids[items[best]].tolist(), scores[best].astype(np.float64).tolist()))

    def close(self) -> None:
        self._forest.unload()
        self._whole = None


def _map_array(path: Path, *, prefault: bool) -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only; ``prefault`` maps every page at once, as the
    forest's are (MAP_POPULATE), not on the first query that reads each row."""
    mapped = np.load(path, mmap_mode="r")
    if not prefault or not hasattr(mmap, "MAP_POPULATE") or not mapped.size:
        return mapped
    with open(path, "rb") as handle:
        pages = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
    return np.frombuffer(pages, dtype=mapped.dtype, count=mapped.size, offset=mapped.offset).reshape(mapped.shape)


def verify_files(directory: Path, manifest: Manifest) -> None:
    expected_sums = {
        manifest.forest_file: manifest.checksum, IDS_FILE: manifest.ids_checksum,
        PROJECTION_FILE: manifest.projection_checksum, VECTORS_FILE: manifest.vectors_checksum,
    }
    for name, expected in ((name, expected_sums[name]) for name in manifest.files if name != MANIFEST_FILE):
        path = Path(directory) / name
        if not path.is_file():
            raise IndexCorrupt(f"{path} is missing")
        if file_sha256(path) != expected:
            raise IndexCorrupt(f"{path} does not match the checksum in its manifest")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

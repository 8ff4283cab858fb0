"""What every index backend offers: publish complete versions, make one current, roll back,
query a version, and (where the engine allows) change vectors in place.

Two kinds of engine sit behind this interface:

- *snapshot* engines (Annoy): a version is an immutable file set. Vectors embedded after the
  build are invisible until the next publish, and the engine knows nothing of hidden or deleted
  rows. ``needs_fresh_segment`` and not ``filters_visibility``: the caller searches the newer
  vectors exactly, merges, and drops hidden and deleted ids itself (over-fetching to fill a page).
- *live* engines (Milvus): a version is a collection that takes upserts, deletions and
  visibility changes at once, and filters hidden rows inside the search, so ``k`` results are
  ``k`` visible ones. The fresh segment is empty by construction.

Every engine failure (unreachable, timed out, refusing) surfaces as :class:`IndexUnavailable`,
never as the engine's own exception types.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import numpy as np

from indexer.index import check_model

# (ids, vectors, visible or None) as published or upserted; visible None means all visible.
Batch = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


class IndexUnavailable(RuntimeError):
    """The index engine cannot answer now (unreachable, timed out, refusing). Transient: search
    says so and retries later; writers fail and their task retries. The message is for logs."""


class VersionNotFound(LookupError):
    """No complete version of that name (never published, pruned, or still building)."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    model: str
    dim: int
    item_count: int  # at publish time; a live engine's count moves with upserts and deletions
    created_at: str  # ISO 8601, UTC
    build_seconds: float

    def check_model(self, model: str) -> None:
        """Raise :class:`indexer.index.IndexMismatch` if ``model`` cannot query this version."""
        check_model(version=self.version, built_with=self.model, model=model)


class IndexReader(ABC):
    """One published version, ready to query. Readers are bound to their version: activating
    another does not change what an open reader answers."""

    info: VersionInfo
    # query(among_ids=...) searches those rows only, inside the engine (a filter expression);
    # elsewhere the caller narrows the nearest itself (gallery.search.filtered_search).
    filters_ids: ClassVar[bool] = False

    @property
    def version(self) -> str:
        return self.info.version

    @abstractmethod
    def query(
        self,
        vector: np.ndarray,
        k: int,
        *,
        only_visible: bool = True,
        exclude_ids: Sequence[int] = (),
        among_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest (external id, cosine similarity) pairs, best first, without
        ``exclude_ids`` and, with ``among_ids``, among those ids only (where the reader
        ``filters_ids``; elsewhere NotImplementedError). ``only_visible`` drops rows marked
        invisible where the backend ``filters_visibility``; elsewhere it has no effect and the
        caller filters."""

    @abstractmethod
    def __len__(self) -> int:
        """Rows in this version now."""

    def close(self) -> None:
        pass


class IndexBackend(ABC):
    """An index engine and the versions published in it."""

    name: ClassVar[str]
    needs_fresh_segment: ClassVar[bool]  # upserts are invisible until the next publish
    filters_visibility: ClassVar[bool]  # query(only_visible=True) returns only visible rows

    def publish(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        model_id: str,
        visible: np.ndarray | None = None,
        version: str | None = None,
    ) -> VersionInfo:
        """Build a complete new version from all the vectors. It is not current until
        :meth:`activate`; a failed publish leaves nothing behind."""
        return self.publish_batches([(ids, vectors, visible)], model_id=model_id, version=version)

    @abstractmethod
    def publish_batches(
        self, batches: Iterable[Batch], *, model_id: str, version: str | None = None
    ) -> VersionInfo:
        """:meth:`publish` from batches read one at a time (a live engine never holds them
        all in memory). Ids must be unique across batches."""

    @abstractmethod
    def versions(self) -> list[VersionInfo]:
        """Complete versions, oldest first."""

    @abstractmethod
    def current_version(self) -> str | None:
        """The version readers should use, or ``None`` before the first :meth:`activate`."""

    @abstractmethod
    def activate(self, version: str) -> None:
        """Make a complete version current, atomically for every reader that asks next."""

    @abstractmethod
    def open(self, version: str | None = None) -> IndexReader:
        """A reader of ``version`` (the current one when ``None``); :class:`VersionNotFound`
        when there is no such complete version (or no current one)."""

    @abstractmethod
    def drop(self, version: str) -> None:
        """Delete a version that is not current."""

    @abstractmethod
    def upsert(
        self, ids: np.ndarray, vectors: np.ndarray, *, model_id: str, visible: np.ndarray | None = None
    ) -> int:
        """Add or replace vectors. Returns how many became searchable in the current version:
        0 on a snapshot engine (they wait for the next publish), or when the current version
        holds another model's vectors."""

    @abstractmethod
    def delete(self, ids: Sequence[int]) -> int:
        """Remove rows. Returns how many were removed from the current version (0 on a
        snapshot engine)."""

    @abstractmethod
    def set_visible(self, ids: Sequence[int], visible: bool) -> int:
        """Show or hide rows in search. Returns how many rows of the current version changed
        (0 on a snapshot engine)."""

    def hidden_ids(self) -> set[int]:
        """The ids the current version holds as hidden (engines that ``filters_visibility``),
        to reconcile them with the database; empty on a snapshot engine."""
        return set()

    def sweep(self, *, known: Collection[str], older_than: float) -> list[str]:
        """For a caller whose own registry (the gallery's database) is the truth: drop complete
        versions it does not know that were made more than ``older_than`` seconds ago (a build
        whose process died before making it current; one in flight is younger: give the longest
        a publish may take), never the current one, and builds that a crashed process left
        unfinished (engines that can tell). Returns the versions dropped."""
        current, cutoff = self.current_version(), time.time() - older_than
        doomed = [
            info.version
            for info in self.versions()
            if info.version not in known and info.version != current and _made_at(info) <= cutoff
        ]
        for name in doomed:
            self.drop(name)
        return doomed

    def close(self) -> None:
        pass


def _made_at(info: VersionInfo) -> float:
    """When a version was made (seconds since the epoch); 0 when it does not say."""
    try:
        return datetime.fromisoformat(info.created_at).timestamp()
    except ValueError:
        return 0.0


def check_batch(ids: np.ndarray, vectors: np.ndarray, visible: np.ndarray | None) -> Batch:
    """The arrays as the backends store them, after checking that they line up."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"need one vector per id, got {len(ids)} ids and {vectors.shape} vectors")
    if visible is not None:
        visible = np.asarray(visible, dtype=bool).ravel()
        if len(visible) != len(ids):
            raise ValueError(f"need one visible flag per id, got {len(visible)} for {len(ids)} ids")
    return ids, vectors, visible

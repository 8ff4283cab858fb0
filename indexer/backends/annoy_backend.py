"""Annoy behind the backend interface: an adapter over :mod:`indexer.index`, which it leaves
as it is (version directories, checksums, memory-mapped loading).

A snapshot engine: a version directory never changes after its rename, so upserts, deletions
and visibility changes wait for the next publish (they return 0), and the caller keeps its
fresh segment and its own hidden/deleted filter. The current version is a one-line ``CURRENT``
file replaced atomically; the gallery, whose versions live in shared storage, keeps its own
pointer in the database and uses this directory as a host's local copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from indexer.backends.base import (
    Batch,
    IndexBackend,
    IndexReader,
    VersionInfo,
    VersionNotFound,
    check_batch,
)
from indexer.files import write_atomically
from indexer.index import (
    DEFAULT_TREES,
    MANIFEST_FILE,
    RECALL_TARGET,
    REDUCED_DIMS,
    IndexCorrupt,
    Manifest,
    SearchIndex,
    build_index,
)

CURRENT_FILE = "CURRENT"


def version_info(manifest: Manifest) -> VersionInfo:
    return VersionInfo(
        version=manifest.version,
        model=manifest.model,
        dim=manifest.dim,
        item_count=manifest.item_count,
        created_at=manifest.created_at,
        build_seconds=manifest.build_seconds,
    )


class AnnoyReader(IndexReader):
    def __init__(self, index: SearchIndex, *, search_k: int = 0):  # 0: the version's own (measured at build)
        self.index = index
        self.manifest = index.manifest
        self.info = version_info(index.manifest)
        self.search_k = search_k

    def query(
        self,
        vector: np.ndarray,
        k: int,
        *,
        only_visible: bool = True,
        exclude_ids: Sequence[int] = (),
        among_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        if among_ids is not None:
            raise NotImplementedError("Annoy cannot search among given ids (filters_ids is False)")
        # Annoy has no filter: ask for as many more as may be excluded.
        excluded = {int(pk) for pk in exclude_ids}
        hits = self.index.query(vector, k + len(excluded), search_k=self.search_k)
        return [(pk, score) for pk, score in hits if pk not in excluded][:k]

    def __len__(self) -> int:
        return len(self.index)

    def close(self) -> None:
        self.index.close()


class AnnoyBackend(IndexBackend):
    name = "annoy"
    needs_fresh_segment = True
    filters_visibility = False

    def __init__(
        self,
        root: str | Path,
        *,
        n_trees: int = DEFAULT_TREES,
        search_k: int = 0,
        verify: bool = True,
        n_jobs: int = -1,
        recall_target: float = RECALL_TARGET,
        reduced_dims: int = REDUCED_DIMS,
    ):
        self.root = Path(root)
        self.n_trees = n_trees
        self.search_k = search_k
        self.verify = verify  # checksum the files when opening (reads them once)
        self.n_jobs = n_jobs
        self.recall_target = recall_target  # what each build measures its search_k against
        self.reduced_dims = reduced_dims  # principal components the forest is over (0: the whole vectors)

    def directory(self, version: str) -> Path:
        """Where a version's files are (``indexer.index.FILES``), e.g. to copy them to storage."""
        return self.root / version

    def publish_batches(
        self, batches: Iterable[Batch], *, model_id: str, version: str | None = None
    ) -> VersionInfo:
        # Visibility is not stored: Annoy versions hold every vector, as they always have.
        parts = [check_batch(*batch)[:2] for batch in batches]
        if not parts or not sum(len(ids) for ids, _ in parts):
            raise ValueError("nothing to publish: no vectors")
        if len(parts) == 1:
            ids, vectors = parts[0]
        else:
            ids = np.concatenate([ids for ids, _ in parts])
            vectors = np.concatenate([vectors for _, vectors in parts])
        manifest = build_index(
            ids, vectors, model=model_id, out_dir=self.root, n_trees=self.n_trees, version=version, n_jobs=self.n_jobs,
            recall_target=self.recall_target, reduced_dims=self.reduced_dims,
        )
        return version_info(manifest)

    def versions(self) -> list[VersionInfo]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if path.name.startswith(".") or not (path / MANIFEST_FILE).is_file():
                continue  # a build in progress (temporary name), or not a version
            try:
                found.append(version_info(Manifest.from_json((path / MANIFEST_FILE).read_text())))
            except (IndexCorrupt, ValueError, OSError):
                continue
        return sorted(found, key=lambda info: info.version)

    def current_version(self) -> str | None:
        try:
            return (self.root / CURRENT_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def activate(self, version: str) -> None:
        if not (self.directory(version) / MANIFEST_FILE).is_file():
            raise VersionNotFound(f"no complete version {version} in {self.root}")
        write_atomically(self.root / CURRENT_FILE, version + "\n")  # readers see the old line or the new one

    def open(self, version: str | None = None) -> AnnoyReader:
        version = version or self.current_version()
        if version is None:
            raise VersionNotFound(f"no version is current in {self.root}")
        if not (self.directory(version) / MANIFEST_FILE).is_file():
            raise VersionNotFound(f"no complete version {version} in {self.root}")
        return AnnoyReader(SearchIndex(self.directory(version), verify=self.verify), search_k=self.search_k)

    def drop(self, version: str) -> None:
        if version == self.current_version():
            raise ValueError(f"version {version} is current: activate another before dropping it")
        shutil.rmtree(self.directory(version), ignore_errors=True)

    def upsert(
        self, ids: np.ndarray, vectors: np.ndarray, *, model_id: str, visible: np.ndarray | None = None
    ) -> int:
        check_batch(ids, vectors, visible)
        return 0  # the next publish takes them in; meanwhile the caller's fresh segment has them

    def delete(self, ids: Sequence[int]) -> int:
        return 0  # the caller filters deleted rows until the next publish leaves them out

    def set_visible(self, ids: Sequence[int], visible: bool) -> int:
        return 0  # the caller filters hidden rows: Annoy versions hold no visibility

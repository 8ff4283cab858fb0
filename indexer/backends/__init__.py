"""Index backends: Annoy files or a Milvus server, behind one interface (:mod:`.base`).

    backend = get_backend("annoy", root=path, n_trees=50)
    backend = get_backend("milvus", uri="http://milvus:19530", token="...", prefix="search_image")

Importing this package needs neither annoy nor pymilvus: each is imported when first used.
"""

from __future__ import annotations

from indexer.backends.base import (
    IndexBackend,
    IndexReader,
    IndexUnavailable,
    VersionInfo,
    VersionNotFound,
)

BACKENDS = ("annoy", "milvus")

__all__ = [
    "BACKENDS",
    "IndexBackend",
    "IndexReader",
    "IndexUnavailable",
    "VersionInfo",
    "VersionNotFound",
    "get_backend",
]


def get_backend(name: str, **options) -> IndexBackend:
    """The backend called ``name`` (``INDEX_BACKEND``), built with its own options:

    - ``annoy``: ``root`` (the folder of version directories), ``n_trees``, ``search_k`` (0: each version's own, chosen at build), ``recall_target`` (what that choice must find), ``reduced_dims`` (principal components the forest is over, 0: the whole vectors), ``verify``;
    - ``milvus``: ``uri`` (``MILVUS_URI``: a ``*.db`` path for Milvus Lite, or
      ``http://host:19530``), ``token`` (``MILVUS_TOKEN``), ``prefix``
      (``MILVUS_COLLECTION_PREFIX``), ``index_type``, ``index_params``, ``search_params``,
      ``consistency_level``, ``timeout``.
    """
    if name == "annoy":
        from indexer.backends.annoy_backend import AnnoyBackend

        return AnnoyBackend(**options)
    if name == "milvus":
        from indexer.backends.milvus_backend import MilvusBackend, import_pymilvus

        try:
            import_pymilvus()
        except ImportError as exc:
            raise ImportError("INDEX_BACKEND=milvus needs pymilvus (and milvus-lite for a local file): pip install -r requirements.txt") from exc

        return MilvusBackend(**options)
    raise ValueError(f"unknown index backend {name!r}; choose one of {', '.join(BACKENDS)}")

"""The published index, loaded once per process and swapped when a newer version is current.

Like ``django.contrib.sites``' ``SITE_CACHE``: a module-level cache with an explicit clear.
Each lookup asks the database which version is current (one indexed query); when that changed,
the version's files are copied from storage into a local cache folder (once per host), checked
against their manifest and memory-mapped. Requests in flight keep the index they started with.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from django.conf import settings

from gallery.models import IndexVersion
from gallery.storage_cache import local_copy
from indexer.index import FILES, IndexCorrupt, SearchIndex

logger = logging.getLogger(__name__)

class IndexUnavailable(RuntimeError):
    """No index is loaded in this process and the current one cannot be fetched."""


_lock = threading.Lock()
_loaded: SearchIndex | None = None


def cache_dir() -> Path:
    path = Path(settings.INDEX_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def current_index() -> SearchIndex | None:
    """The current published index, or ``None`` before the first publish."""
    global _loaded
    current = IndexVersion.objects.filter(is_current=True).only("version", "checksum").first()
    if current is None:
        return None
    loaded = _loaded
    if loaded is not None and loaded.version == current.version:
        return loaded
    with _lock:
        if _loaded is None or _loaded.version != current.version:
            try:
                index = _load(current)
            except Exception as exc:  # storage unreachable or refusing, or a damaged copy
                if _loaded is None:
                    raise IndexUnavailable(f"index {current.version} cannot be fetched from storage ({exc})") from exc
                logger.warning("still serving index %s: %s cannot be loaded: %s", _loaded.version, current.version, exc)
                return _loaded
            logger.info("loaded index %s (%d images)", index.version, len(index))
            _loaded = index
        return _loaded


def clear_index_cache() -> None:
    global _loaded
    with _lock:
        _loaded = None


def _load(version: IndexVersion) -> SearchIndex:
    """Memory-map this host's copy, fetching it again once if the copy is damaged."""
    for attempt in (1, 2):
        directory = local_copy(version.storage_prefix, FILES, cache_dir() / version.version)
        try:
            index = SearchIndex(directory)
            if index.manifest.checksum != version.checksum:
                raise IndexCorrupt(f"index {version.version} in storage does not match the database record")
            return index
        except IndexCorrupt:
            shutil.rmtree(directory, ignore_errors=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")

"""The published index, loaded once per process and swapped when a newer version is current.

Like ``django.contrib.sites``' ``SITE_CACHE``: a module-level cache with an explicit clear.
Each lookup asks the database which version is current (one indexed query); when that changed,
the version's files are copied from storage into this host's cache (once per host), checked
against their manifest and memory-mapped. Requests in flight keep the index they started with.

A process holds a shared lock on the copy it serves. When it swaps, it deletes every other
local copy that no process holds, so a host keeps the current version plus at most the ones
other processes have not yet swapped away from (pruning in storage only reaches the host that
prunes).
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
from pathlib import Path

from django.conf import settings

from gallery.engine.artifacts import local_copy, local_folder
from gallery.errors import SEARCH_UNAVAILABLE, Unavailable
from gallery.models import IndexVersion
from indexer.index import FILES, OPTIONAL_FILES, IndexCorrupt, SearchIndex

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: SearchIndex | None = None
_in_use = None  # open file holding a shared lock on the loaded copy's marker


def current_index(current: IndexVersion | None = None) -> SearchIndex | None:
    """The current published index, or ``None`` before the first publish. ``current``: the
    current version's row when the caller has read it (``gallery.engine.backend``, which also
    checks that it is an Annoy version)."""
    global _loaded
    if current is None:
        current = IndexVersion.objects.current("version", "checksum")
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
                    logger.error("index %s cannot be loaded: %s", current.version, exc)
                    raise Unavailable(SEARCH_UNAVAILABLE) from exc
                logger.warning("still serving index %s: %s cannot be loaded: %s", _loaded.version, current.version, exc)
                return _loaded
            logger.info("loaded index %s (%d images)", index.version, len(index))
            _loaded = index
            _hold(index.version)
            remove_unused_copies()
        return _loaded


def clear_index_cache() -> None:
    global _loaded
    with _lock:
        _loaded = None
        _hold(None)


def remove_unused_copies() -> list[str]:
    """Delete local copies of versions that no process on this host holds."""
    folder = local_folder("indexes")
    removed = []
    for directory in folder.iterdir():
        if directory.name.startswith(".") or not directory.is_dir():
            continue  # markers, lock files, and copies still being downloaded
        marker = folder / f".{directory.name}.in-use"
        with open(marker, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # some process still serves it
            shutil.rmtree(directory, ignore_errors=True)
            for leftover in (marker, folder / f".{directory.name}.lock"):
                leftover.unlink(missing_ok=True)
        removed.append(directory.name)
    if removed:
        logger.info("removed local index copies %s", ", ".join(sorted(removed)))
    return removed


def local_index_dir(version: str) -> Path:
    return local_folder("indexes") / version


def _hold(version: str | None) -> None:
    """Mark ``version`` as served by this process (and release the previous mark)."""
    global _in_use
    if _in_use is not None:
        _in_use.close()  # releases the shared lock
        _in_use = None
    if version is not None:
        _in_use = open(local_folder("indexes") / f".{version}.in-use", "a")
        fcntl.flock(_in_use, fcntl.LOCK_SH)


def _load(version: IndexVersion) -> SearchIndex:
    """Memory-map this host's copy, fetching it again once if the copy is damaged."""
    for attempt in (1, 2):
        directory = local_copy(version.storage_prefix, FILES, local_index_dir(version.version), optional=OPTIONAL_FILES)
        try:
            verified = _verified(directory)
            index = SearchIndex(directory, verify=not verified, prefault=settings.INDEX_PREFAULT)
            if index.manifest.checksum != version.checksum:
                raise IndexCorrupt(f"index {version.version} in storage does not match the database record")
            if not verified:
                _stamp(directory)
            return index
        except IndexCorrupt:
            shutil.rmtree(directory, ignore_errors=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# Checking a copy's files against its manifest reads all of them: ~3 GB, several seconds, at a
# million images. Each copy is checked once, by the first process that loads it; later processes
# (every Airflow task is one) trust it while its files keep the size and time they had then.
_STAMP = ".verified"


def _file_marks(directory: Path) -> str:
    present = [directory / name for name in FILES if (directory / name).exists()]
    return ";".join(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in present)


def _verified(directory: Path) -> bool:
    try:
        return (directory / _STAMP).read_text() == _file_marks(directory)
    except OSError:
        return False


def _stamp(directory: Path) -> None:
    try:
        (directory / _STAMP).write_text(_file_marks(directory))
    except OSError as exc:  # a read-only cache: every process checks the files itself
        logger.info("could not mark %s as checked: %s", directory, exc)

"""Immutable artifacts kept in storage (index versions, ONNX exports) and this host's local
cache of them: stored once under a prefix, fetched once per host into a folder, atomically, so
several processes never see half a copy."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

# Written in pieces of 8 MB, a host's copy sits in the page cache in folios as large as the
# kernel makes them (2 MB on ext4 and XFS with large folios), which the processes that map it
# map whole: one TLB entry for 2 MB of index instead of 512. Written in pieces of 1 MB it was
# mapped in 4 KB pages, and a query right after the text encoder's forward pass (which leaves
# the TLB and caches full of the model) took 5.8-7.5 ms instead of 3.8-4.4 at a million images
# (Intel Xeon, 2 cores, avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16; docs/performance.md section 29).
COPY_CHUNK = 8 << 20


def local_folder(kind: str) -> Path:
    """This host's folder for one kind of artifact under INDEX_CACHE_DIR: ``indexes`` (copies
    of published versions), ``builds`` (indexes being built), ``onnx`` (model exports)."""
    path = Path(settings.INDEX_CACHE_DIR) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_copy(prefix: str, names: tuple[str, ...], target: Path, *, optional: tuple[str, ...] = ()) -> Path:
    """``target`` holding ``names`` from ``prefix/`` in storage (those of ``optional`` only
    where storage has them); the last name marks completeness.

    Processes of one host take turns on a lock file, so the first downloads and the others
    find its copy: a 3 GB index is fetched once per host, not once per worker."""
    if (target / names[-1]).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / names[-1]).exists():
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for name in names:
                if name in optional and not default_storage.exists(f"{prefix}/{name}"):
                    continue
                with default_storage.open(f"{prefix}/{name}", "rb") as src, open(work / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, COPY_CHUNK)
            os.rename(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def store_artifact(folder: Path, prefix: str, names: tuple[str, ...]) -> None:
    """Save ``names`` from ``folder`` under ``prefix/`` in storage, in order (the last marks
    the upload complete)."""
    from django.core.files import File

    for name in names:
        if default_storage.exists(f"{prefix}/{name}"):
            default_storage.delete(f"{prefix}/{name}")
        with open(folder / name, "rb") as handle:
            default_storage.save(f"{prefix}/{name}", File(handle))

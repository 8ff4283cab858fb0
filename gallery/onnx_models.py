"""ONNX exports of the configured model, kept in storage next to the index versions."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from django.conf import settings

from gallery.storage_cache import local_copy, publish
from indexer.embedding import ClipEmbedder, ModelLoadError, ModelSpec, weights_id
from indexer.onnx_export import FILES, MANIFEST, export_onnx


def storage_prefix(spec: ModelSpec) -> str:
    source = f"{spec.model}/{weights_id(spec)}"
    return f"{settings.ONNX_STORAGE_PREFIX}/{re.sub(r'[^A-Za-z0-9._-]+', '-', source)}"


def onnx_export(*, embedder: ClipEmbedder, int8: bool = True) -> dict:
    """Export the torch model and store the files (the manifest last)."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export_onnx(embedder, Path(tmp), int8=int8)
        names = tuple(name for precision in manifest["precisions"] for name in FILES[precision]) + (MANIFEST,)
        publish(Path(tmp), storage_prefix(embedder.spec), names)
    return manifest


def local_dir(spec: ModelSpec) -> Path:
    """This host's copy of the export for ``spec`` (fetched from storage on first use)."""
    from gallery.index_cache import cache_dir

    precision = "int8" if spec.runtime == "onnx-int8" else "fp32"
    prefix = storage_prefix(spec)
    target = cache_dir() / "onnx" / f"{prefix.rsplit('/', 1)[1]}-{precision}"
    try:
        return local_copy(prefix, (*FILES[precision], MANIFEST), target)
    except OSError as exc:
        raise ModelLoadError(
            f"CLIP_RUNTIME={spec.runtime} needs an ONNX export of {spec.model}/{weights_id(spec)} in storage "
            f"({prefix}/: {exc}). Run `manage.py export_onnx`, or set CLIP_RUNTIME=torch."
        ) from None

"""ONNX exports of the configured model, kept in storage next to the index versions."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from gallery.engine.artifacts import local_copy, local_folder, store_artifact
from gallery.errors import StorageUnavailable
from indexer.embedding import ModelLoadError, ModelSpec
from indexer.embedding.onnx_backend import MANIFEST
from indexer.files import write_atomically
from indexer.index import file_sha256

logger = logging.getLogger(__name__)

CALIBRATION_PHOTOS = 32  # the gallery's own, topped up with the sample photos


def storage_prefix(spec: ModelSpec) -> str:
    return f"{settings.ONNX_STORAGE_PREFIX}/{re.sub(r'[^A-Za-z0-9._-]+', '-', spec.torch_model_id)}"


def onnx_export(*, embedder, int8: bool = True, variants=None) -> dict:
    """Export the torch model and store the files (the manifest last)."""
    from indexer.onnx_export import INT8_VARIANTS, export_onnx, manifest_files

    photos = calibration_photos(min_size=embedder.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export_onnx(embedder, Path(tmp), photos=photos, int8=int8, variants=variants or INT8_VARIANTS)
        store_artifact(Path(tmp), storage_prefix(embedder.spec), manifest_files(manifest))
    return manifest


def export_exists(spec: ModelSpec) -> bool:
    try:
        return default_storage.exists(f"{storage_prefix(spec)}/{MANIFEST}")
    except ModelLoadError:  # a checkpoint path that is not a file: no export can match
        return False
    except Exception as exc:  # the storage backend's own errors: an outage, which a retry outlives
        raise StorageUnavailable(f"storage could not be read ({exc})") from exc


class ExportFiles:
    """The export for a spec as this host sees it, for :func:`indexer.embedding.get_embedder`:
    each file is fetched from storage on first use, once per host (a web process answering text
    queries never downloads the image tower). The manifest is read afresh when an embedder
    loads; the other files are kept under their checksum, so a new export never meets a stale copy."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec  # nothing else here: made on every search, used only when a model loads
        self.checksums: dict[str, str] | None = None

    @property
    def prefix(self) -> str:
        return storage_prefix(self.spec)

    @property
    def folder(self) -> Path:
        return local_folder("onnx") / self.prefix.rsplit("/", 1)[1]

    def __call__(self, name: str) -> Path:
        if name == MANIFEST or self.checksums is None:
            manifest = self._manifest()
            if name == MANIFEST:
                return manifest
        checksum = self.checksums.get(name, "")
        target = self.folder / f"{checksum[:16]}-{name}"
        fresh = not (target / name).exists()
        path = local_copy(self.prefix, (name,), target) / name
        if fresh and file_sha256(path) != checksum:  # checked once per copy, not at every start
            shutil.rmtree(target, ignore_errors=True)
            raise ModelLoadError(f"{self.prefix}/{name} does not match the checksum in its manifest; export again.")
        return path

    def _manifest(self) -> Path:
        try:
            with default_storage.open(f"{self.prefix}/{MANIFEST}", "rb") as handle:
                data = handle.read()
            self.checksums = dict(json.loads(data).get("files", {}))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"CLIP_RUNTIME={self.spec.runtime} needs an ONNX export of {self.spec.torch_model_id} in storage "
                f"({self.prefix}/: {exc}). Run `manage.py export_onnx`, or set CLIP_RUNTIME=torch."
            ) from None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{MANIFEST}"
        if not path.exists():
            write_atomically(path, data)
        return path


def _shared_choice_name(spec: ModelSpec) -> str:
    from indexer.runtime_choice import host_kind

    return f"{storage_prefix(spec)}/runtime-choices/{host_kind()}.json"


def fetch_shared_choice(spec: ModelSpec, state: Path) -> None:
    """Copy the runtime choice made on a host of this kind (same CPU, same runtimes installed)
    from storage, if there is one; it still counts only for the export it names."""
    try:
        with default_storage.open(_shared_choice_name(spec), "rb") as handle:
            data = handle.read()
    except (OSError, ValueError):
        return
    write_atomically(state, data)


def share_choice(spec: ModelSpec, choice) -> None:
    """Keep a new choice in storage for other hosts of this kind; failing that is no error."""
    from django.core.files.base import ContentFile

    name = _shared_choice_name(spec)
    try:
        if default_storage.exists(name):
            default_storage.delete(name)
        default_storage.save(name, ContentFile(choice.to_json().encode()))
    except Exception as exc:  # storage down or read-only: this host keeps its own copy
        logger.warning("runtime choice not shared: %s", exc)


def calibration_photos(*, min_size: int, limit: int = CALIBRATION_PHOTOS) -> list:
    """Up to ``limit`` photos of the gallery (spread over its history), then sample photos."""
    from gallery.catalogue.samples import available_samples
    from gallery.models import Image
    from indexer.images import open_rgb

    photos = []
    names = list(Image.objects.exclude(status=Image.Status.FAILED).order_by("?").values_list("file", flat=True)[:limit])
    for name in names:
        try:
            with default_storage.open(name, "rb") as handle:
                photos.append(open_rgb(handle.read(), min_size=min_size))
        except Exception as exc:  # one unreadable photo must not stop an export
            logger.warning("calibration photo %s skipped: %s", name, exc)
    for sample in available_samples()[: max(0, limit - len(photos))]:
        photos.append(open_rgb(sample.path.read_bytes(), min_size=min_size))
    return photos

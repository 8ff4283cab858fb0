"""CLIP through ONNX Runtime, from a folder written by :mod:`indexer.onnx_export`.

The same output contract (L2-normalised float32) as the torch backend, and no torch: the
preprocessing is Pillow and numpy, the tokenizer pure Python, and the export carries the
vocabulary and the preprocessing settings. Each tower's session is created on first use, so a
web process that only answers text queries never loads the image tower.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, Union

import numpy as np

from indexer.embedding.base import ONNX_PRECISIONS, ModelLoadError, ModelSpec, empty, normalise, onnx_model_id
from indexer.embedding.preprocess import PreprocessConfig, Preprocessor
from indexer.embedding.tokenizer import ClipTokenizer
from indexer.index import file_sha256

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

# The export folder's layout (written by indexer.onnx_export).
FORMAT = 2  # 1: before the export carried its tokenizer and reference vectors
MANIFEST = "manifest.json"
TOWER_FILES = {"fp32": ("image.onnx", "text.onnx"), "int8": ("image-int8.onnx", "text-int8.onnx")}
REFERENCE = "reference.npz"  # torch's vectors of a few photos and texts: agreement without torch


# Where an export's files are: a folder, or a callable that gives a local path for a file's name
# (the gallery fetches each file from storage on first use).
ExportFiles = Union[Path, Callable[[str], Path]]


def export_file(files: ExportFiles, name: str) -> Path:
    return files / name if isinstance(files, Path) else files(name)


def read_manifest(files: ExportFiles) -> dict:
    try:
        path = export_file(files, MANIFEST)
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"No ONNX export found ({exc}); run `manage.py export_onnx` first.") from None
    if manifest.get("format") != FORMAT:
        raise ModelLoadError(f"The ONNX export {path} was made by an older version; run `manage.py export_onnx` again.")
    return manifest


class OnnxEmbedder:
    """``model_id`` names the precision, so vectors of different runtimes never share an index."""

    def __init__(self, spec: ModelSpec, files: ExportFiles, *, expected_model_id: str):
        if spec.runtime not in ONNX_PRECISIONS:
            raise ModelLoadError(f"CLIP_RUNTIME={spec.runtime!r} is not an ONNX runtime ({', '.join(ONNX_PRECISIONS)}).")
        self.spec = spec
        self.runtime = spec.runtime
        self.precision = ONNX_PRECISIONS[spec.runtime]
        self.files = files
        manifest = self.manifest = read_manifest(files)
        if manifest["model_id"] != expected_model_id:
            raise ModelLoadError(
                f"The ONNX export was made from {manifest['model_id']}, but CLIP_MODEL/CLIP_PRETRAINED "
                f"configure {expected_model_id}: run `manage.py export_onnx` again."
            )
        if self.precision not in manifest["precisions"]:
            raise ModelLoadError(f"The ONNX export has no {self.precision} model; run `manage.py export_onnx` without --no-int8.")
        self.torch_model_id = manifest["model_id"]
        self.dim = int(manifest["dim"])
        self.image_size = int(manifest["image_size"])
        self.device = "cpu"
        self._preprocess = Preprocessor(PreprocessConfig.from_dict(manifest["preprocess"]))
        self._files = dict(zip(("image", "text"), TOWER_FILES[self.precision]))
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()
        # Most processes need the text tower first: ONNX Runtime builds it (without the GIL)
        # while the tokenizer reads its vocabulary; an error shows on first use.
        threading.Thread(target=self._preload_text, name="onnx-text-tower", daemon=True).start()
        tokenizer = manifest["tokenizer"]
        self.tokenizer = ClipTokenizer(self._checked(tokenizer["vocab"]), tokenizer["context_length"])

    @property
    def model_id(self) -> str:
        return onnx_model_id(self.torch_model_id, self.precision)

    @property
    def is_random(self) -> bool:
        return self.torch_model_id.endswith("/random")

    def preprocess(self, image: PILImage) -> np.ndarray:
        return self._preprocess(image)

    def encode_images(self, images: Sequence[PILImage]) -> np.ndarray:
        if not images:
            return empty(self.dim)
        return self.encode_image_batch(np.stack([self.preprocess(image) for image in images]))

    def encode_image_batch(self, batch: np.ndarray) -> np.ndarray:
        return self._run("image", np.asarray(batch, dtype=np.float32))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return empty(self.dim)
        return self._run("text", self.tokenizer(list(texts)))

    def _run(self, tower: str, inputs: np.ndarray) -> np.ndarray:
        session = self._session(tower)
        (features,) = session.run(None, {session.get_inputs()[0].name: inputs})
        return normalise(features)

    def _session(self, tower: str):
        session = self._sessions.get(tower)
        if session is None:
            with self._lock:
                if tower not in self._sessions:
                    self._sessions[tower] = new_session(self._checked(self._files[tower]))
                session = self._sessions[tower]
        return session

    def _preload_text(self) -> None:
        try:
            self._session("text")
        except Exception:  # raised again to the caller of the first text query
            pass

    def _checked(self, name: str) -> Path:
        """The local path of an export file, checked against the manifest (a fetcher that gives
        paths, like the gallery's, checks what it copies itself)."""
        path = export_file(self.files, name)
        if isinstance(self.files, Path) and (not path.is_file() or file_sha256(path) != self.manifest["files"].get(name)):
            raise ModelLoadError(f"{path} does not match the checksum in its manifest; export again.")
        return path


def new_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("ONNX_THREADS", "0"))  # 0: all cores
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

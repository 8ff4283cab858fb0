"""Reading the words in a picture (OCR), without Django.

Two engines behind one interface, :class:`OcrEngine`:

- ``rapidocr``: PP-OCRv6 detection and recognition (ONNX models inside the ``rapidocr`` wheel,
  run by onnxruntime). Detection runs first; only the regions it finds are recognised, so a
  photo without text costs one detector pass: that is the "likely to contain text" test.
- ``tesseract``: Debian's Tesseract 5 (``tesseract-ocr`` + ``tesseract-ocr-eng``), run as a
  program (TSV output: words, boxes, confidences).

Both import or start nothing until the first read. :class:`TimedReader` runs an engine in a
child process and kills it when one picture takes longer than a limit, so no picture (a
crafted one included) keeps a worker busy without bound; the caller decodes and shrinks the
picture first (:func:`bounded_picture`, with the upload rules of :mod:`indexer.images`).
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.images import prepare_image

logger = logging.getLogger(__name__)

ENGINES = ("rapidocr", "tesseract")
MAX_SIDE = 1600  # longest side OCR sees: small print stays legible, work per picture stays bounded
DETECTOR_SIDE = 960  # rapidocr's detector sees the picture at most this long
MIN_CONFIDENCE = 0.5  # lines the engine itself doubts are noise (a stray "8" on a photo of coffee)
# A line needs this many letters or digits: single characters read on textures are the main
# source of false text on photos, and no one searches for one character.
MIN_CHARACTERS = 2


class OcrError(RuntimeError):
    """The engine could not read this picture (the message says why)."""


class OcrUnavailable(RuntimeError):
    """The engine itself cannot run (not installed, cannot start): no picture is to blame."""


class OcrTimeout(OcrError):
    """Reading one picture took longer than the time limit."""


@dataclass(frozen=True)
class OcrLine:
    text: str
    # The four corners (x, y), clockwise from top-left, as fractions of the picture's width
    # and height: they stay true for the original at any size.
    box: tuple[tuple[float, float], ...]
    confidence: float  # 0..1

    def as_dict(self) -> dict:
        return {"text": self.text, "box": [list(point) for point in self.box], "confidence": round(self.confidence, 4)}


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float | None:
        """The mean confidence over the kept lines (None when nothing was read)."""
        return float(np.mean([line.confidence for line in self.lines])) if self.lines else None


class OcrEngine:
    """Reads an RGB picture (a numpy ``uint8`` array, height x width x 3)."""

    name = ""

    def read(self, picture: np.ndarray) -> OcrResult:
        started = time.perf_counter()
        height, width = picture.shape[:2]
        lines = [
            OcrLine(text=text, box=_relative(box, width, height), confidence=confidence)
            for text, box, confidence in self._read(picture)
            if confidence >= MIN_CONFIDENCE and len(re.findall(r"[^\W_]", text)) >= MIN_CHARACTERS
        ]
        return OcrResult(lines=lines, seconds=time.perf_counter() - started)

    def load(self) -> None:
        """Load models or check the program now, rather than at the first picture."""

    def _read(self, picture: np.ndarray):
        """Yields ``(text, four (x, y) corners in pixels, confidence 0..1)``."""
        raise NotImplementedError


class RapidOcrEngine(OcrEngine):
    name = "rapidocr"

    def __init__(self, threads: int = 0):
        self.threads = threads
        self._engine = None

    def load(self) -> None:
        if self._engine is None:
            from rapidocr import RapidOCR  # heavy: onnxruntime sessions for three models

            # The detector's default scales the *shorter* side up to 736 px; on a photo with a
            # tilted label that missed every line (measured), while bounding the longer side
            # found them: the picture is already at most MAX_SIDE.
            params = {"Global.log_level": "error", "Det.limit_type": "max", "Det.limit_side_len": DETECTOR_SIDE}
            if self.threads:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
            self._engine = RapidOCR(params=params)

    def _read(self, picture):
        self.load()
        output = self._engine(picture)
        if output.boxes is None or output.txts is None:
            return
        for box, text, score in zip(output.boxes, output.txts, output.scores):
            yield " ".join(text.split()), [(float(x), float(y)) for x, y in box], float(score)


class TesseractEngine(OcrEngine):
    name = "tesseract"

    def __init__(self, threads: int = 1, language: str = "eng", psm: int = 11):
        self.threads, self.language, self.psm = threads, language, psm

    def load(self) -> None:
        try:
            subprocess.run(["tesseract", "--version"], capture_output=True, check=True)
        except (FileNotFoundError, subprocess.CalledProcessError):
            raise OcrUnavailable("tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng)") from None

    def _read(self, picture):
        png = io.BytesIO()
        Image.fromarray(picture).save(png, format="PNG", compress_level=1)
        try:
            done = subprocess.run(
                ["tesseract", "stdin", "stdout", "-l", self.language, "--psm", str(self.psm), "tsv"],
                input=png.getvalue(),
                capture_output=True,
                env={"OMP_THREAD_LIMIT": str(self.threads), "PATH": "/usr/bin:/bin:/usr/local/bin"},
                check=False,
            )
        except FileNotFoundError:
            raise OcrError("tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng)") from None
        if done.returncode != 0:
            raise OcrError(f"tesseract failed: {done.stderr.decode(errors='replace').strip()[:300]}")
        # Words of one line share (block, paragraph, line): join them into one line of text.
        lines: dict[tuple, list] = {}
        for row in done.stdout.decode(errors="replace").splitlines()[1:]:
            cols = row.split("\t")
            if len(cols) != 12 or not cols[11].strip() or float(cols[10]) < 0:
                continue
            left, top, width, height = (int(value) for value in cols[6:10])
            lines.setdefault(tuple(cols[2:5]), []).append((cols[11].strip(), left, top, width, height, float(cols[10])))
        for words in lines.values():
            x0 = min(w[1] for w in words)
            y0 = min(w[2] for w in words)
            x1 = max(w[1] + w[3] for w in words)
            y1 = max(w[2] + w[4] for w in words)
            text = " ".join(w[0] for w in words)
            yield text, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], sum(w[5] for w in words) / len(words) / 100


def create_engine(name: str, *, threads: int = 0) -> OcrEngine:
    if name == "rapidocr":
        return RapidOcrEngine(threads=threads)
    if name == "tesseract":
        return TesseractEngine(threads=threads or 1)
    raise ValueError(f"Unknown OCR engine {name!r}: use one of {', '.join(ENGINES)}.")


def bounded_picture(data: bytes, *, max_pixels: int, max_full_decode_pixels: int | None, max_side: int = MAX_SIDE) -> np.ndarray:
    """Decode an original with the upload rules (pixel limits, verified structure, EXIF
    orientation: :func:`indexer.images.prepare_image` raises ``ImageRejected`` otherwise) and
    shrink it to at most ``max_side`` on its longest side: an RGB ``uint8`` array."""
    _, image = prepare_image(data, max_pixels=max_pixels, max_full_decode_pixels=max_full_decode_pixels, thumbnail_size=max_side)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


class TimedReader:
    """An engine in a child process, with a time limit per picture. The child loads the engine
    once and reads picture after picture; one that runs over the limit is killed (and the
    next read starts a new child), and the read raises :class:`OcrTimeout`. Use as a context
    manager, or call :meth:`close`."""

    def __init__(self, engine: str, *, seconds: float, threads: int = 0):
        create_engine(engine)  # an unknown name fails here, not in the child
        self.engine, self.seconds, self.threads = engine, seconds, threads
        self._process = None
        self._conn = None
        self.peak_mb = 0.0  # the reading process's peak resident memory (its own and its programs')

    def read(self, picture: np.ndarray) -> OcrResult:
        if self._process is None or self._process.poll() is not None:
            self._start()
        self._conn.send(picture)
        if not self._conn.poll(self.seconds):
            self._kill()
            raise OcrTimeout(f"reading the text took longer than {self.seconds:g} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:  # the child died (out of memory, a crash in native code)
            self._kill()
            raise OcrError("the OCR engine stopped while reading this picture") from None
        if kind == "error":
            raise OcrError(value)
        result, self.peak_mb = value
        return result

    STARTUP_SECONDS = 120.0  # for a child to start and load its models (not counted per picture)

    def _start(self) -> None:
        # A fresh interpreter running this module (not multiprocessing's spawn, which imports
        # the parent's main script again: Airflow's, a benchmark's), so nothing of the parent
        # (Django's connections, torch's threads) is copied in. They talk over a socket pair.
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "indexer.ocr", str(theirs.fileno()), self.engine, str(self.threads)],
            pass_fds=[theirs.fileno()],
            env=env,
            start_new_session=True,  # its own process group: a kill also stops a running tesseract
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        # The child says when its engine is loaded; the time limit counts from there.
        if not self._conn.poll(self.STARTUP_SECONDS):
            self._kill()
            raise OcrUnavailable(f"the OCR engine did not start within {self.STARTUP_SECONDS:g} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            self._kill()
            raise OcrUnavailable("the OCR engine could not start") from None
        if kind == "error":
            self._kill()
            raise OcrUnavailable(value)

    def _kill(self) -> None:
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            try:
                self._conn.send(None)
                self._process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(conn, engine_name: str, threads: int) -> None:
    engine = create_engine(engine_name, threads=threads)
    try:
        engine.load()
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"[:500]))
        return
    conn.send(("ready", None))
    while True:
        try:
            picture = conn.recv()
        except EOFError:
            return
        if picture is None:
            return
        try:
            result = engine.read(picture)
            conn.send(("ok", (result, _peak_mb())))
        except Exception as exc:  # reported to the parent, which records it for this picture
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:500]))


def _peak_mb() -> float:
    import resource

    usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return usage / 1024  # kB on Linux


def _relative(box, width: int, height: int) -> tuple[tuple[float, float], ...]:
    return tuple((round(min(max(x / width, 0.0), 1.0), 4), round(min(max(y / height, 0.0), 1.0), 4)) for x, y in box)


if __name__ == "__main__":  # the child of TimedReader: python -m indexer.ocr FD ENGINE THREADS
    from indexer import ocr  # by its own name, so what it sends unpickles as indexer.ocr's classes

    ocr._serve(Connection(int(sys.argv[1])), sys.argv[2], int(sys.argv[3]))

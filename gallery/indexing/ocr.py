"""Reading the words in pictures (OCR), the enrichment step after embedding.

The DAG's ``read_text`` task and ``manage.py read_text`` run :func:`images_read_text`. It reads
each original that has not been read yet (or whose original changed since: a replaced or
rotated picture is read again), with the same decode bounds as uploads, shrunk to
``OCR_MAX_SIDE``, and with ``OCR_TIME_LIMIT`` seconds per picture (``indexer.ocr.TimedReader``).
What it finds goes to :class:`~gallery.models.ImageText` (lines, boxes, confidences) and to the
image's ``ocr_text``/``ocr_terms``, which keyword search reads with the title, tags and description.

Every image read gets its ``ImageText`` row, also when nothing was found or reading failed,
so a run that stops halfway goes on where it stopped and nothing is read twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from tqdm import tqdm

from gallery.catalogue import keywords
from gallery.errors import StorageUnavailable
from gallery.indexing import EmbedReport
from gallery.indexing import _reader as reader_of  # the embed step's reads: retries, storage errors
from gallery.models import Image, ImageText
from indexer.images import ImageRejected
from indexer.ocr import OcrError, OcrResult, TimedReader, bounded_picture

logger = logging.getLogger(__name__)
# A picture of a printed page reads as pages of text; search needs its words, not all of them,
# and every search result row carries this column.
MAX_TEXT = 10_000


@dataclass
class ReadReport:
    read: int = 0  # pictures read (with or without text)
    with_text: int = 0  # of those, pictures where text was found
    failed: int = 0  # could not be decoded or read in time (recorded; not retried until the original changes)
    seconds: float = 0.0
    skipped: bool = False  # OCR_ENABLED is off
    peak_mb: float = 0.0  # the reading process's peak resident memory

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in ("read", "with_text", "failed", "seconds", "skipped", "peak_mb")}


def images_needing_text() -> QuerySet[Image]:
    """Images never read, or read from another original than the one they have now."""
    return Image.objects.filter(Q(ocr_record__isnull=True) | ~Q(ocr_record__source=F("file")))


def images_read_text(
    *, ids: list[int] | None = None, limit: int | None = None, again: bool = False, progress: bool = False
) -> ReadReport:
    """Read the text in the images that need it (those of ``ids`` only, when given; at most
    ``limit``, oldest first; ``again`` reads them even if they were read)."""
    if not settings.OCR_ENABLED:
        logger.info("OCR is off (OCR_ENABLED): no text read")
        return ReadReport(skipped=True)
    queryset = Image.objects.all() if again else images_needing_text()
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    todo = list(queryset.order_by("pk").values_list("pk", "file")[:limit])
    report = ReadReport()
    if not todo:
        return report
    started = time.perf_counter()
    with TimedReader(settings.OCR_ENGINE, seconds=settings.OCR_TIME_LIMIT, threads=settings.OCR_THREADS) as reader:
        for pk, name in tqdm(todo, desc="Reading text", unit="img", disable=not progress):
            result, error = _read_one(reader, name)
            if _store(pk, name, result, error):
                report.read += 1
                report.with_text += bool(result.lines)
                report.failed += bool(error)
        report.peak_mb = reader.peak_mb
    report.seconds = time.perf_counter() - started
    logger.info(
        "read the text of %d images (%d with text, %d failed) in %.1f s with %s",
        report.read, report.with_text, report.failed, report.seconds, settings.OCR_ENGINE,
    )
    return report


def images_read_text_after_embedding(*, embed_report: EmbedReport, new_only: bool) -> ReadReport:
    """What the DAG's ``read_text`` task does after the embed tasks. A run started by uploads
    (``new_only``) reads the images those tasks embedded for the first time, looked up by id:
    its cost does not grow with the gallery. Other runs read the backlog (never read, or whose
    original changed), which reads the whole table: once an hour, not once per upload."""
    if new_only and not embed_report.ids:
        return ReadReport()
    return images_read_text(ids=embed_report.ids if new_only else None, limit=settings.OCR_MAX_PER_RUN)


def _read_one(reader: TimedReader, name: str) -> tuple[OcrResult, str]:
    """``(result, error)``: an original that cannot be decoded or read in time gives an empty
    result and why. A store that is down, or an engine that cannot start (OcrUnavailable),
    raises: the task fails and retries later, and no picture is marked for it."""
    try:
        data = reader_of(name)()
        picture = bounded_picture(
            data,
            max_pixels=settings.UPLOAD_MAX_PIXELS,
            max_full_decode_pixels=settings.UPLOAD_MAX_FULL_DECODE_PIXELS,
            max_side=settings.OCR_MAX_SIDE,
        )
        del data
        return reader.read(picture), ""
    except StorageUnavailable:
        raise
    except (ImageRejected, OcrError) as exc:
        reason = str(exc)
    except Exception as exc:  # an original gone or refused by the store (indexing.reader_of)
        reason = f"{type(exc).__name__}: {exc}"
    logger.warning("the text of %s could not be read: %s", name, reason)
    return OcrResult(), reason[:2000]


def _store(pk: int, name: str, result: OcrResult, error: str) -> bool:
    """Write what was read, unless the row was deleted or got another original meanwhile
    (then the next run reads the new one). Returns whether it was written."""
    text = result.text[:MAX_TEXT]
    with transaction.atomic():
        if not Image.objects.filter(pk=pk, file=name).update(ocr_text=text, ocr_terms=keywords.code_spellings(text)):
            return False
        ImageText.objects.update_or_create(
            image_id=pk,
            defaults={
                "lines": [line.as_dict() for line in result.lines],
                "confidence": result.confidence,
                "engine": settings.OCR_ENGINE,
                "source": name,
                "seconds": round(result.seconds, 3),
                "error": error,
            },
        )
        keywords.images_reindex([pk])
    return True


from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gallery.errors import StorageUnavailable
from gallery.indexing.ocr import images_needing_text, images_read_text
from indexer.ocr import OcrUnavailable


class Command(BaseCommand):
    help = (
        "Read the words in pictures (OCR) that have not been read yet, or whose original changed: "
        "the backfill after turning OCR on. Safe to stop and run again: it goes on where it stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="read at most this many pictures")
        parser.add_argument("--again", action="store_true", help="read every picture again (after changing OCR_ENGINE)")

    def handle(self, *args, limit, again, **options):
        if not settings.OCR_ENABLED:
            raise CommandError("OCR is off (OCR_ENABLED=false): nothing read.")
        if options["verbosity"] > 0 and not again:
            self.stdout.write(f"{images_needing_text().count()} pictures to read with {settings.OCR_ENGINE}.")
        try:
            report = images_read_text(limit=limit, again=again, progress=options["verbosity"] > 0)
        except (StorageUnavailable, OcrUnavailable) as exc:
            raise CommandError(f"{exc}; run the command again later (what was read is kept).") from None
        rate = report.read / report.seconds if report.seconds else 0.0
        self.stdout.write(
            self.style.SUCCESS(
                f"Read {report.read} pictures: {report.with_text} with text, {report.failed} failed, "
                f"in {report.seconds:.1f} s ({rate:.1f} images/s)."
            )
        )

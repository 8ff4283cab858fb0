from django.core.management.base import BaseCommand, CommandError

from gallery.errors import GalleryError
from gallery.indexing import images_embed_pending, new_images_match


class Command(BaseCommand):
    help = (
        "Embed pending images with the configured CLIP model and store their vectors; then look for "
        "near-duplicates and saved-search matches among the new ones (as the DAG does)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args, batch_size, **options):
        try:
            report = images_embed_pending(batch_size=batch_size, progress=options["verbosity"] > 0)
            new_images_match(report)  # near-duplicates and saved searches, as the DAG does after embedding
        except GalleryError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Embedded {report.embedded} images ({report.failed} failed) "
                f"in {report.seconds:.1f} s ({report.rate:.1f} images/s)."
            )
        )

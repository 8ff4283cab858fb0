"""Which CLIP runtime this host uses, and the measurements behind CLIP_RUNTIME=auto."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gallery.engine import embedder
from gallery.errors import GalleryError
from indexer.embedding import AUTO


class Command(BaseCommand):
    help = "Show this host's CLIP runtime and, with CLIP_RUNTIME=auto, the figures that chose it (--measure: again)."

    def add_arguments(self, parser):
        parser.add_argument("--measure", action="store_true", help="measure every runtime again on this CPU")

    def handle(self, *args, measure, **options):
        if measure and settings.CLIP_RUNTIME != AUTO:
            raise CommandError(f"CLIP_RUNTIME={settings.CLIP_RUNTIME} is set explicitly; --measure is for CLIP_RUNTIME=auto.")
        try:
            _, choice = embedder.runtime_spec(measure_again=measure)
        except GalleryError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(embedder.runtime_summary())
        if choice is not None:
            self.stdout.write("")
            self.stdout.write(choice.table())

from django.core.management.base import BaseCommand, CommandError

from gallery.errors import GalleryError
from gallery.indexing import index_prune, index_publish


class Command(BaseCommand):
    help = "Build an index over all stored vectors, publish it as the current version, prune old ones."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="rebuild even if nothing changed")

    def handle(self, *args, force, **options):
        try:
            version = index_publish(force=force, progress=options["verbosity"] > 0)
        except GalleryError as exc:
            raise CommandError(exc.detail) from None
        if version is None:
            self.stdout.write("Nothing to publish: the current index is up to date (use --force to rebuild).")
            return
        pruned = index_prune()
        self.stdout.write(
            self.style.SUCCESS(
                f"Published index {version.version}: {version.item_count} images, "
                f"built in {version.build_seconds:.1f} s." + (f" Pruned {len(pruned)} old versions." if pruned else "")
            )
        )

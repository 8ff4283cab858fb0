from django.core.management.base import BaseCommand, CommandError

from gallery.errors import GalleryError
from gallery.indexing import index_rollback


class Command(BaseCommand):
    help = "Serve the index version published before the current one again (undo a bad publish)."

    def handle(self, *args, **options):
        try:
            version = index_rollback()
        except GalleryError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(self.style.SUCCESS(f"Index {version.version} is current again ({version.item_count} images)."))

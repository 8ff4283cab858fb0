from django.core.management.base import BaseCommand, CommandError

from gallery.errors import Unavailable
from gallery.indexing import index_rollback
from indexer.backends import VersionNotFound


class Command(BaseCommand):
    help = "Serve the index version published before the current one again (undo a bad publish)."

    def handle(self, *args, **options):
        try:
            version = index_rollback()
        except (VersionNotFound, Unavailable) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Index {version.version} is current again ({version.item_count} images)."))

from django.core.management.base import BaseCommand, CommandError

from gallery.errors import GalleryError
from gallery.indexing import index_refresh_now


class Command(BaseCommand):
    help = "Reindex now: trigger the Airflow DAG if AIRFLOW_API_URL is set, else embed and publish here."

    def handle(self, *args, **options):
        try:
            self.stdout.write(self.style.SUCCESS(index_refresh_now()))
        except GalleryError as exc:
            raise CommandError(exc.detail) from None

from django.core.management.base import BaseCommand, CommandError

from gallery.errors import AirflowUnavailable
from gallery.indexing import index_refresh_now
from indexer.embedding import ModelLoadError


class Command(BaseCommand):
    help = "Reindex now: trigger the Airflow DAG if AIRFLOW_API_URL is set, else embed and publish here."

    def handle(self, *args, **options):
        try:
            self.stdout.write(self.style.SUCCESS(index_refresh_now()))
        except (AirflowUnavailable, ModelLoadError) as exc:
            raise CommandError(str(exc)) from None

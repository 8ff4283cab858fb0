from django.apps import AppConfig


class GalleryConfig(AppConfig):
    name = "gallery"
    verbose_name = "Gallery"

    def ready(self) -> None:
        # The listeners of the catalogue's signals (gallery.catalogue.signals): a live engine
        # takes hides and deletions, Airflow hears of new uploads.
        from gallery.engine import backend  # noqa: F401
        from gallery.indexing import airflow_api  # noqa: F401

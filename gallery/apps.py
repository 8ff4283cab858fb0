from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GalleryConfig(AppConfig):
    name = "gallery"
    verbose_name = "Gallery"

    def ready(self) -> None:
        # The listeners of the catalogue's signals (gallery.catalogue.signals): a live engine
        # takes hides and deletions, Airflow hears of new uploads.
        from gallery.engine import backend  # noqa: F401
        from gallery.indexing import airflow_api  # noqa: F401

        post_migrate.connect(_ensure_triggers, sender=self)


def _ensure_triggers(sender, using, **kwargs) -> None:
    """After every migrate and flush (gallery.catalogue.tombstones): SQLite drops a table's
    triggers when a migration rebuilds it, and a flush empties the visibility generation's table
    and, on SQLite, may delete the images after the tombstones, leaving one for each."""
    from gallery.catalogue import tombstones

    if tombstones.ensure_triggers(using) and "plan" not in kwargs:  # a flush: migrate passes its plan
        tombstones.forget_all(using)

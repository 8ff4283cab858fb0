"""Hourly search-index refresh: embed new uploads with CLIP and publish a new Annoy index.

Configuration only: every task is a few lines calling ``gallery.indexing`` services, the same
ones the management commands run. Nothing heavy happens at import (Airflow parses this file
often); Django is set up inside the tasks.

    find_pending -> embed (one mapped task per chunk of ids) -> publish -> prune
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag, task

CHUNK_SIZE = int(os.environ.get("INDEX_EMBED_CHUNK_SIZE", "1000"))


def _django() -> None:
    """Make the project importable and set Django up (once per task process)."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()


@dag(
    dag_id="search_index",
    schedule=os.environ.get("INDEX_DAG_SCHEDULE", "@hourly"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two overlapping runs would only embed the same rows twice
    is_paused_upon_creation=False,  # indexing is the point of installing it
    default_args={
        "retries": int(os.environ.get("INDEX_DAG_RETRIES", "2")),
        "retry_delay": timedelta(minutes=1),
    },
    tags=["search-image"],
    doc_md=__doc__,
)
def search_index():
    @task
    def find_pending() -> list[list[int]]:
        """Chunks of image ids to embed; each chunk becomes one `embed` task."""
        _django()
        from gallery.indexing import pending_chunks

        return pending_chunks(chunk_size=CHUNK_SIZE)  # logs the count

    @task
    def embed(ids: list[int]) -> dict:
        _django()
        from gallery.indexing import images_embed_pending

        return images_embed_pending(ids=ids).as_dict()  # logs the count and images/s

    @task(trigger_rule="none_failed")
    def publish(reports: list[dict]) -> str | None:
        """Build over every stored vector, publish, make current, mark rows indexed."""
        _django()
        from gallery.indexing import EmbedReport, index_publish

        version = index_publish(embed_report=EmbedReport.total(reports))  # logs what it did
        return version.version if version else None

    @task
    def prune(published: str | None) -> list[str]:
        """Old versions go once their successor has been current for the grace period."""
        _django()
        from gallery.indexing import index_prune

        return index_prune()

    prune(publish(embed.expand(ids=find_pending())))


search_index()

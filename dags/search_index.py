"""Search-index refresh, hourly or when new uploads arrive: embed them with CLIP into the fresh
segment (Annoy) or the current version (Milvus; INDEX_BACKEND); and, in a DAG of its own, the
compaction that rebuilds the index over everything and publishes it as a new version.

Configuration only: every task is a few lines calling ``gallery.indexing`` services, the same
ones the management commands run. Nothing heavy happens at import (Airflow parses this file
often); Django is set up inside the tasks.

Uploads post an event for the ``gallery_uploads`` asset (``indexer.dag_names``); a run starts on
the first event or on the hour, whichever comes first. With ``max_active_runs=1`` events that
arrive during a run wait, and the next run consumes all of them: a burst of uploads gives a
handful of runs, not one per photo.

    search_index:
    find_pending -> embed (one mapped task per chunk of ids) -> publish -> request_compaction
                      |-> near_duplicates       (the ids the embed tasks report)
                      |-> saved_search_matches  (the same ids)
                      '-> read_text             (OCR: the same ids; hourly, the backlog)

near_duplicates and saved_search_matches read only the ids the embed tasks report, their
candidates and the saved searches' stored vectors: what they cost does not grow with the
gallery; nor does read_text's in a run started by uploads (hourly runs read the OCR backlog,
at most OCR_MAX_PER_RUN pictures). New uploads are searchable without waiting for any of the three.

    search_index_compact (on the compaction asset, which request_compaction updates when a
    rebuild is due: every hourly or manual run, a fresh segment past FRESH_SEGMENT_MAX, a new
    model):
    compact -> prune

A rebuild over a million images takes minutes; in its own DAG it never holds up the runs that
make new uploads searchable (the publish lease keeps two rebuilds from overlapping, and rows
embedded after a rebuild's snapshot stay in the fresh segment).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from airflow.sdk.exceptions import AirflowSkipException

# The project root, for `indexer` here and for Django in the tasks (the DAG folder is on sys.path).
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from indexer.dag_names import (  # noqa: E402
    COMPACT_DAG_ID,
    COMPACTION_ASSET_NAME,
    COMPACTION_ASSET_URI,
    INDEX_DAG_ID,
    NEW_UPLOADS_ASSET_NAME,
    NEW_UPLOADS_ASSET_URI,
)

NEW_UPLOADS = Asset(name=NEW_UPLOADS_ASSET_NAME, uri=NEW_UPLOADS_ASSET_URI)
COMPACTION = Asset(name=COMPACTION_ASSET_NAME, uri=COMPACTION_ASSET_URI)
CHUNK_SIZE = int(os.environ.get("INDEX_EMBED_CHUNK_SIZE", "1000"))


def _django() -> None:
    """Set Django up (once per task process)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()


DEFAULT_ARGS = {
    "retries": int(os.environ.get("INDEX_DAG_RETRIES", "2")),
    "retry_delay": timedelta(minutes=1),
}


def _started_by_uploads() -> bool:
    """Whether this run is the quick kind (started by upload events), not hourly or manual."""
    from airflow.sdk import get_current_context

    return get_current_context()["dag_run"].run_type == "asset_triggered"


@dag(
    dag_id=INDEX_DAG_ID,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(os.environ.get("INDEX_DAG_SCHEDULE", "@hourly"), timezone="UTC"),
        assets=[NEW_UPLOADS],
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Two overlapping runs would only embed the same rows twice; and while one runs, new upload
    # events queue up for the next run instead of starting one run each.
    max_active_runs=1,
    is_paused_upon_creation=False,  # indexing is the point of installing it
    default_args=DEFAULT_ARGS,
    tags=["search-image"],
    doc_md=__doc__,
)
def search_index():
    @task
    def find_pending() -> list[list[int]]:
        """Chunks of image ids to embed; each chunk becomes one `embed` task. A quick run looks
        only for rows without a vector, which needs no model (the hourly run also finds rows
        of an older model to embed again)."""
        _django()
        from gallery.indexing import pending_chunks

        return pending_chunks(chunk_size=CHUNK_SIZE, new_only=_started_by_uploads())  # logs the count

    @task
    def embed(ids: list[int]) -> dict:
        _django()
        from gallery.indexing import images_embed_pending

        return images_embed_pending(ids=ids).as_dict()  # logs the count and images/s

    @task(trigger_rule="none_failed")
    def publish(reports: list[dict]) -> dict | None:
        """Nothing is built here on Annoy: the new vectors are searchable in the fresh segment,
        and this says whether a compaction is due (hourly and manual runs, a fresh segment past
        FRESH_SEGMENT_MAX, a new model). On Milvus: publish a first version or a new model's,
        upsert what an embed could not. An unreachable Milvus fails the task, which retries.
        Returns the embed report for the compaction when one is due (its model, without ids)."""
        _django()
        from gallery.indexing import EmbedReport, index_publish_new

        total = EmbedReport.total(reports)
        step = index_publish_new(scheduled=not _started_by_uploads(), embed_report=total)  # logs what it did
        return {**total.as_dict(), "ids": []} if step.compaction_due else None

    @task(outlets=[COMPACTION])
    def request_compaction(report: dict | None, outlet_events=None) -> None:
        """Update the compaction asset (its event carries the embed report), which starts the
        compaction DAG; skipped when none is due."""
        if report is None:
            raise AirflowSkipException("no compaction due")
        outlet_events[COMPACTION].extra = {"embed_report": report}

    @task(trigger_rule="none_failed")
    def near_duplicates(reports: list[dict]) -> int:
        """Group the new images with their near-duplicates, found through the search engine
        (nearest stored vectors, then the hashes of those candidates only)."""
        _django()
        from gallery.indexing import EmbedReport

        ids = EmbedReport.total(reports).ids
        if not ids:
            return 0
        from gallery.indexing.duplicates import near_duplicates_find

        return len(near_duplicates_find(image_ids=ids))  # logs the groups

    @task(trigger_rule="none_failed")
    def saved_search_matches(reports: list[dict]) -> int:
        """Record the new images that match members' saved searches (their stored vectors)."""
        _django()
        from gallery.indexing import EmbedReport
        from gallery.search.saved_searches import saved_searches_record_matches

        total = EmbedReport.total(reports)
        if not total.ids:
            return 0
        return saved_searches_record_matches(image_ids=total.ids, model_id=total.model_id)  # logs the count

    @task(trigger_rule="none_failed")
    def read_text(reports: list[dict]) -> dict:
        """Read the words in pictures (OCR; off with OCR_ENABLED), at most OCR_MAX_PER_RUN a
        run, after embedding and beside publishing, so new uploads are searchable without
        waiting for it: the embedded ids in a run started by uploads, else the backlog. A run
        whose embedding failed leaves it to the next run, as near_duplicates does."""
        _django()
        from gallery.indexing import EmbedReport
        from gallery.indexing.ocr import images_read_text_after_embedding

        return images_read_text_after_embedding(
            embed_report=EmbedReport.total(reports), new_only=_started_by_uploads()
        ).as_dict()  # logs the count

    reports = embed.expand(ids=find_pending())
    request_compaction(publish(reports))
    near_duplicates(reports)
    saved_search_matches(reports)
    read_text(reports)


search_index()


@dag(
    dag_id=COMPACT_DAG_ID,
    schedule=[COMPACTION],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Requests that arrive during a rebuild wait, and the next run answers all of them.
    max_active_runs=1,
    is_paused_upon_creation=False,
    default_args=DEFAULT_ARGS,
    tags=["search-image"],
    doc_md=__doc__,
)
def search_index_compact():
    @task
    def compact() -> str | None:
        """Rebuild the index over every stored vector and publish it when anything changed (on
        Milvus: repair the hidden rows the engine missed). A manual run of this DAG compacts too."""
        _django()
        from airflow.sdk import get_current_context

        from gallery.indexing import EmbedReport, index_compact

        events = get_current_context().get("triggering_asset_events") or {}
        reports = [event.extra["embed_report"] for event in events.get(COMPACTION, ()) if "embed_report" in event.extra]
        version = index_compact(embed_report=EmbedReport.total(reports) if reports else None)  # logs what it did
        return version.version if version else None

    @task
    def prune(published: str | None) -> list[str]:
        """Old versions go once their successor has been current for the grace period."""
        _django()
        from gallery.indexing import index_prune

        return index_prune()

    prune(compact())


search_index_compact()

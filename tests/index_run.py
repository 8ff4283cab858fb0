"""An index run's steps in this process, as the DAG's tasks call them (dags/search_index.py):
embed, then the near-duplicate and saved-search tasks on the ids the embed step reports."""

from gallery import indexing
from gallery.indexing.duplicates import near_duplicates_find
from gallery.search.saved_searches import saved_searches_record_matches


def embed_and_match(**kwargs) -> indexing.EmbedReport:
    report = indexing.images_embed_pending(**kwargs)
    near_duplicates_find(image_ids=report.ids)
    saved_searches_record_matches(image_ids=report.ids, model_id=report.model_id)
    return report

"""What the web tier and the Airflow DAG agree on, importable without Django and without Airflow.

Every new upload updates an Airflow asset: the gallery posts an event for it through Airflow's
REST API (``gallery.indexing.airflow_api.announce_new_images``) and the indexing DAG is scheduled on it.
"""

NEW_UPLOADS_ASSET_NAME = "gallery_uploads"
NEW_UPLOADS_ASSET_URI = "searchimage://gallery/uploads"

# The indexing DAG's id: the DAG file and "reindex now" (gallery.indexing.airflow_api) both use it.
INDEX_DAG_ID = "search_index"

# The compaction DAG (a rebuild over every stored vector, then pruning) runs apart from the
# indexing DAG, so runs started by uploads never wait behind a rebuild: the indexing DAG's
# `request_compaction` task updates this asset when one is due, and the compaction DAG is
# scheduled on it.
COMPACT_DAG_ID = "search_index_compact"
COMPACTION_ASSET_NAME = "gallery_index_compaction"
COMPACTION_ASSET_URI = "searchimage://gallery/index-compaction"

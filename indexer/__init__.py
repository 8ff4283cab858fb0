"""Framework-free search-index library: CLIP embeddings, image decoding and Annoy indexes.

Nothing here imports Django; the `gallery` app and the Airflow DAG call into it.
"""

"""What the catalogue tells the contexts above it, so that its writes never call them.

Uploads and curation change rows; the engine (a live index takes hides and deletions at once)
and the orchestrator (Airflow is told that new images arrived) listen. Receivers are connected
in ``GalleryConfig.ready``, as Django's own apps connect theirs.
"""

from django.dispatch import Signal

# Sent once the transaction that stored new pending images has committed (the DAG run it
# starts must see them). No arguments.
images_added = Signal()

# Sent before an update shows or hides ``images`` (a QuerySet, read before the update moves its
# rows), inside the caller's transaction; ``visible`` is what they become.
images_visibility_changing = Signal()

# Sent after rows were deleted, inside the caller's transaction: ``ids``.
images_deleted = Signal()

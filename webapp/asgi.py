"""ASGI entry point: Django's, with request bodies limited while they stream in
(``gallery.http.request_limits.LimitedASGIHandler``)."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup(set_prefix=False)

from gallery.http.request_limits import LimitedASGIHandler  # noqa: E402
from indexer.embedding.factory import leave_the_cores_to_the_model  # noqa: E402

leave_the_cores_to_the_model()  # numpy's BLAS on one thread beside the model, set before serving
application = LimitedASGIHandler()

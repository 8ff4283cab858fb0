"""WSGI entry point (gunicorn webapp.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

from indexer.embedding.factory import leave_the_cores_to_the_model

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
leave_the_cores_to_the_model()  # numpy's BLAS on one thread beside the model, set before serving
application = get_wsgi_application()

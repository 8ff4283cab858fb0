"""ASGI entry point: Django's, with request bodies limited while they stream in
(``gallery.http.request_limits.LimitedASGIHandler``)."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup(set_prefix=False)

from gallery.http.request_limits import LimitedASGIHandler  # noqa: E402

application = LimitedASGIHandler()

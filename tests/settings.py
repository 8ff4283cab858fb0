"""Test settings: the project's settings with a tiny random-weight OpenCLIP model.

The database comes from DATABASE_URL as in production (SQLite when unset), so the same suite
runs on PostgreSQL. Media and index folders are replaced per test by a fixture.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only")
# Never what a local `make run` wrote into var/settings.env (its Airflow, its model).
os.environ.setdefault("GALLERY_SETTINGS_FILE", "")

from webapp.settings import *  # noqa: E402,F403

# A two-layer ViT with 32-d vectors, registered from tests/clip_configs: the real OpenCLIP
# code path, in milliseconds, without downloading anything.
CLIP_MODEL = "tiny-test"
CLIP_PRETRAINED = "random"
CLIP_MODEL_CONFIG_DIR = str(Path(__file__).parent / "clip_configs")
CLIP_FALLBACK_TO_RANDOM = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: the Airflow tests run the DAG in another process on the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"gallery-tests-{os.getpid()}.sqlite3")}  # noqa: F405
EMBED_BATCH_SIZE = 4
INDEX_TREES = 10
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Static files straight from the finders (no collectstatic in tests), as `runserver` does.
STATIC_ROOT = Path(tempfile.gettempdir()) / "gallery-tests-static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Tests read the status line (counts, serving version) right after changing them; tests/test_scale.py checks the cache.
INDEX_STATUS_CACHE_SECONDS = 0

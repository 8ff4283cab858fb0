"""Settings, all from environment variables (README lists each one).

The defaults are the embedded ones a newcomer needs: SQLite and a local media folder under
``var/``, debug off. A ``.env`` file in the project root is read when present.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from xstatic.pkg import bootstrap as xstatic_bootstrap

from indexer.dag_names import INDEX_DAG_ID
from indexer.embedding import DEFAULT_MODEL, DEFAULT_PRETRAINED

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env.str("GALLERY_VAR_DIR", default=str(BASE_DIR / "var")))
# What `make run` chose for this installation (its secret key, the random-weights fallback, the
# model, Airflow's address and login), written by scripts/run, so that every `manage.py` command
# and every DAG task sees the same configuration without exporting anything. The environment and
# .env still win; GALLERY_SETTINGS_FILE= (empty) reads none (the tests do that).
SETTINGS_FILE = env.str("GALLERY_SETTINGS_FILE", default=str(VAR_DIR / "settings.env"))
if SETTINGS_FILE and Path(SETTINGS_FILE).is_file():
    environ.Env.read_env(SETTINGS_FILE)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Only a development server may fall back to a built-in key; anything else must set one.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-dev-key" if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if "*" in ALLOWED_HOSTS and not DEBUG:
    # Any Host header would be believed, and the API's absolute URLs (page, original and
    # thumbnail links) follow it: a client could have them point anywhere.
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS=* is refused outside DJANGO_DEBUG: list the host names the gallery is served at.")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS in production (README, "Security"). Off by default so `make run` works on plain HTTP;
# behind a proxy or API Gateway that terminates TLS, set DJANGO_SECURE_PROXY_SSL_HEADER=1 so
# Django trusts its X-Forwarded-Proto header (only when the proxy always sets it).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery:gallery"
LOGOUT_REDIRECT_URL = "gallery:gallery"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "gallery",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so pages can render their answer (user, messages); still before any view or the CSRF
    # check reads a body.
    "gallery.web.middleware.RequestBodyLimitMiddleware",
    "gallery.web.middleware.SignInThrottleMiddleware",
]
# A Server-Timing header on every answer: the app's time and, of it, the text encoder's, the
# index query's and the database's (gallery.http.server_timing). Off unless asked for; benchmarks ask.
SERVER_TIMING = env.bool("SERVER_TIMING", default=False)
if SERVER_TIMING:
    MIDDLEWARE.insert(0, "gallery.http.server_timing.ServerTimingMiddleware")
# Every password sign-in (page, admin, token endpoint) passes the one sign-in limit.
AUTHENTICATION_BACKENDS = ["gallery.http.throttles.ThrottledModelBackend"]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "gallery.web.context_processors.index_status",
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
SQLITE_CACHE_MB = env.int("DATABASE_SQLITE_CACHE_MB", default=64)
if SQLITE_CACHE_MB < 1:
    raise ImproperlyConfigured("DATABASE_SQLITE_CACHE_MB is a size in megabytes, at least 1.")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Web requests and the indexer write at the same time; wait for the lock instead of failing.
    # Each connection keeps up to DATABASE_SQLITE_CACHE_MB of the file's pages (SQLite's own
    # default is 2 MB): a search reads ~320 entries of the visible-ids index and the words'
    # index, scattered over a 4.5 GB file at a million images, and from the operating system's
    # cache each page costs a read call (a new text search 14.3-14.9 -> 12.1-12.3 ms beyond its
    # encoding at 1M, unchanged at 10k, 2 AMD EPYC cores with avx2 avx512f avx512_vnni avx512_bf16;
    # docs/performance.md section 25).
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20, "transaction_mode": "IMMEDIATE",
        "init_command": f"PRAGMA cache_size = -{SQLITE_CACHE_MB * 1024}",
    })
# A thread keeps its connection from one request to the next for DATABASE_CONN_MAX_AGE seconds
# (checked before reuse) instead of opening one per request: a new PostgreSQL connection cost
# 5-8 ms of every request here (docs/performance.md, "Scale"). 0: one connection per request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The throttles' counts (searches, uploads, failed sign-ins) and short-lived counts for pages live
# in Django's cache. Per process by default; with several web processes, hosts or functions, point
# CACHE_URL at a shared Redis (redis://[:password@]host:6379/1), or each process counts alone and
# the sign-in limit is multiplied by their number.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a check: Django tells every validator when a password was changed (the password page,
    # an admin's reset, `manage.py changepassword`), and this one ends the user's API tokens.
    {"NAME": "gallery.api.authentication.TokensEndWithPassword"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
# Bootstrap ships inside the xstatic-bootstrap package: served by the app, never from a CDN.
STATICFILES_DIRS = [("bootstrap", xstatic_bootstrap.BASE_DIR)]
MEDIA_URL = env.str("DJANGO_MEDIA_URL", default="/media/")
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Any S3-compatible object storage (django-storages + boto3) when S3_BUCKET is set: originals,
# thumbnails, index versions and ONNX exports all live in the bucket; browsers get short-lived
# presigned URLs. Without it, the local media folder, served by the app.
S3_BUCKET = env.str("S3_BUCKET", default="")
if S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("S3_REGION", default="us-east-1"),
            "access_key": env.str("S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("S3_SECRET_ACCESS_KEY", default="") or None,
            "addressing_style": env.str("S3_ADDRESSING_STYLE", default="path"),
            "signature_version": "s3v4",
            "location": env.str("S3_PREFIX", default=""),
            "querystring_auth": True,
            "querystring_expire": env.int("S3_URL_EXPIRE_SECONDS", default=3600),
            "file_overwrite": False,
            # Every object is immutable (names carry a hash or a version): browsers may keep it.
            "object_parameters": {"CacheControl": "public, max-age=31536000, immutable"},
        },
    }
GALLERY_SERVE_MEDIA = env.bool("GALLERY_SERVE_MEDIA", default=not S3_BUCKET)

DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024  # form fields; files are limited below

# --- The gallery ---------------------------------------------------------------------------
CLIP_MODEL = env.str("CLIP_MODEL", default=DEFAULT_MODEL)
CLIP_PRETRAINED = env.str("CLIP_PRETRAINED", default=DEFAULT_PRETRAINED)
CLIP_DEVICE = env.str("CLIP_DEVICE", default="")  # "" = CUDA when present, else CPU
CLIP_MODEL_CONFIG_DIR = env.str("CLIP_MODEL_CONFIG_DIR", default="")
CLIP_CACHE_DIR = env.str("CLIP_CACHE_DIR", default="")
# Use random weights (with a banner on every page) when the configured ones cannot be loaded.
# Only the demo sets this; otherwise a missing model is an error.
CLIP_FALLBACK_TO_RANDOM = env.bool("CLIP_FALLBACK_TO_RANDOM", default=False)
# auto (measured per host once an ONNX export exists, else torch), torch, onnx or onnx-int8 (README "Fast CPU inference").
CLIP_RUNTIME = env.str("CLIP_RUNTIME", default="auto")
ONNX_STORAGE_PREFIX = env.str("ONNX_STORAGE_PREFIX", default="onnx")
EMBED_BATCH_SIZE = env.int("EMBED_BATCH_SIZE", default=16)

# Where the index lives (gallery/engine/backend.py): "annoy" files in storage, memory-mapped on
# each web host, or "milvus" collections on a Milvus server (or Milvus Lite on a *.db path).
INDEX_BACKEND = env.str("INDEX_BACKEND", default="annoy")
if INDEX_BACKEND not in ("annoy", "milvus"):
    raise ImproperlyConfigured(f"INDEX_BACKEND must be annoy or milvus, not {INDEX_BACKEND!r}")
MILVUS_URI = env.str("MILVUS_URI", default=str(VAR_DIR / "milvus.db"))
MILVUS_TOKEN = env.str("MILVUS_TOKEN", default="")
MILVUS_COLLECTION_PREFIX = env.str("MILVUS_COLLECTION_PREFIX", default="search_image")
MILVUS_TIMEOUT = env.float("MILVUS_TIMEOUT", default=10.0)  # seconds per call: then search answers 503
# "Bounded" searches may miss writes of the last second or so (search still drops rows hidden
# in the database); "Strong" sees every write, at some latency.
MILVUS_CONSISTENCY_LEVEL = env.str("MILVUS_CONSISTENCY_LEVEL", default="Bounded")
INDEX_TREES = env.int("INDEX_TREES", default=50)
# Annoy nodes a query inspects: 0 lets each version use what its build measured (the fewest that
# find INDEX_RECALL_TARGET of the true top 10: indexer.index.tune_search_k); a number fixes it.
INDEX_SEARCH_K = env.int("INDEX_SEARCH_K", default=0)
INDEX_RECALL_TARGET = env.float("INDEX_RECALL_TARGET", default=0.98)
if INDEX_SEARCH_K < 0 or not 0 < INDEX_RECALL_TARGET <= 1:
    raise ImproperlyConfigured("INDEX_SEARCH_K is a number of nodes (0: each version's own) and INDEX_RECALL_TARGET a share above 0, at most 1.")
# Annoy over the vectors' first principal components, its candidates re-ranked by the whole
# vectors (indexer.index.REDUCED_DIMS: half the nodes for the same recall); 0: over the whole vectors.
INDEX_REDUCED_DIMS = env.int("INDEX_REDUCED_DIMS", default=128)
if INDEX_REDUCED_DIMS < 0:
    raise ImproperlyConfigured("INDEX_REDUCED_DIMS is a number of principal components (0: the whole vectors).")
# Map the whole Annoy index when a process loads it, not page by page as queries touch it.
INDEX_PREFAULT = env.bool("INDEX_PREFAULT", default=True)
INDEX_STORAGE_PREFIX = env.str("INDEX_STORAGE_PREFIX", default="indexes")
INDEX_CACHE_DIR = Path(env.str("INDEX_CACHE_DIR", default=str(VAR_DIR / "index-cache")))
INDEX_KEEP_VERSIONS = env.int("INDEX_KEEP_VERSIONS", default=3)
# A replaced version is deleted only this long after its successor was published.
INDEX_PRUNE_GRACE_SECONDS = env.int("INDEX_PRUNE_GRACE_SECONDS", default=3600)
# One publisher at a time; a crashed one's lease runs out after this long.
INDEX_PUBLISH_LEASE_SECONDS = env.int("INDEX_PUBLISH_LEASE_SECONDS", default=1800)
# Vectors embedded since the last build are searched exactly (gallery/engine/fresh_segment.py); past
# this many, the next run rebuilds the index rather than waiting for the hourly compaction.
FRESH_SEGMENT_MAX = env.int("FRESH_SEGMENT_MAX", default=20_000)
# The recall gate (gallery/indexing/recall_gate.py): a new build becomes current only if sampled stored
# vectors find their own image in its top 10 and curators' golden queries do no worse.
RECALL_GATE = env.bool("RECALL_GATE", default=True)
RECALL_GATE_SAMPLE = env.int("RECALL_GATE_SAMPLE", default=1000)
RECALL_GATE_MIN_STRUCTURAL = env.float("RECALL_GATE_MIN_STRUCTURAL", default=0.99)
# Near-duplicates (gallery/indexing/duplicates.py): CLIP cosine at least this, and the crop-tolerant
# 256-bit perceptual hashes at most this many bits apart of 256 (64-bit hashes, for rows from
# before the 256-bit ones: of 64); images without a hash need DUPLICATE_COSINE_ALONE. Chosen on
# generated copies (docs/performance.md, "Near-duplicates"); re-check them with real weights.
DUPLICATE_MIN_COSINE = env.float("DUPLICATE_MIN_COSINE", default=0.8)
DUPLICATE_MAX_PHASH256_DISTANCE = env.int("DUPLICATE_MAX_PHASH256_DISTANCE", default=70)
DUPLICATE_MAX_PHASH_DISTANCE = env.int("DUPLICATE_MAX_PHASH_DISTANCE", default=12)
DUPLICATE_COSINE_ALONE = env.float("DUPLICATE_COSINE_ALONE", default=0.97)
# How many nearest stored vectors (index and fresh segment) each new image is compared with;
# only those candidates' hashes are read, whatever the gallery's size.
DUPLICATE_CANDIDATES = env.int("DUPLICATE_CANDIDATES", default=32)

# "Reindex now" triggers the DAG through Airflow's REST API when AIRFLOW_API_URL is set,
# and otherwise runs the same pipeline inline.
AIRFLOW_API_URL = env.str("AIRFLOW_API_URL", default="")
AIRFLOW_API_USERNAME = env.str("AIRFLOW_API_USERNAME", default="")
AIRFLOW_API_PASSWORD = env.str("AIRFLOW_API_PASSWORD", default="")
AIRFLOW_DAG_ID = INDEX_DAG_ID  # indexer/dag_names.py: the DAG file uses the same constant

UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=50 * 1024 * 1024)
# JPEGs decode at a reduced scale, so a 100 MP photo costs a few MB; the other formats decode
# whole, and their lower limit bounds an upload's memory (30 MP RGBA is 120 MB).
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=100_000_000)
UPLOAD_MAX_FULL_DECODE_PIXELS = env.int("UPLOAD_MAX_FULL_DECODE_PIXELS", default=30_000_000)
UPLOAD_MAX_FILES = env.int("UPLOAD_MAX_FILES", default=50)  # files in one page upload
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# A file part stops at UPLOAD_MAX_BYTES while it streams in, before the rest reaches a temporary file.
FILE_UPLOAD_HANDLERS = [
    "gallery.http.request_limits.StreamingLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
SEARCH_PAGE_SIZE = 16  # pages and API alike
# How long the link to an image search's results works (the query travels signed in the URL).
SEARCH_TOKEN_MAX_AGE = env.int("SEARCH_TOKEN_MAX_AGE", default=7 * 24 * 3600)
SEARCH_MAX_RESULTS = env.int("SEARCH_MAX_RESULTS", default=320)  # 20 pages
# Below this best score the page says there is no good match (CLIP text-image cosines of good
# matches are typically 0.25-0.35; unrelated ones 0.1-0.2).
SEARCH_WEAK_SCORE = env.float("SEARCH_WEAK_SCORE", default=0.2)
# How text queries are ranked: "hybrid" fuses CLIP with full-text search over titles, tags and
# descriptions; "clip" and "keywords" use one of them alone (a query can ask with `ranking=`).
SEARCH_RANKING = env.str("SEARCH_RANKING", default="hybrid")
if SEARCH_RANKING not in ("hybrid", "clip", "keywords"):
    raise ImproperlyConfigured(f"SEARCH_RANKING must be hybrid, clip or keywords, not {SEARCH_RANKING!r}")
# The status line under every page and /api/v1/index/ (its counts, and which index serves and
# when it was built) is read from the database at most once per this many seconds per cache
# (Django's default cache: per process), so a page never counts a million rows nor makes a query
# for it; it may be this old. 0 reads it on every request.
INDEX_STATUS_CACHE_SECONDS = env.int("INDEX_STATUS_CACHE_SECONDS", default=30)
# Reciprocal rank fusion's constant: 60, as in Cormack et al. (2009); see gallery/search/ranking.py.
SEARCH_RRF_K = env.int("SEARCH_RRF_K", default=60)

# Words in the picture (OCR, gallery/indexing/ocr.py): read after embedding by the DAG's read_text task
# and `manage.py read_text`. The engine was chosen on benchmarks/ocr.py (docs/performance.md, "OCR").
OCR_ENABLED = env.bool("OCR_ENABLED", default=True)
OCR_ENGINE = env.str("OCR_ENGINE", default="rapidocr")
if OCR_ENGINE not in ("rapidocr", "tesseract"):
    raise ImproperlyConfigured(f"OCR_ENGINE must be rapidocr or tesseract, not {OCR_ENGINE!r}")
OCR_TIME_LIMIT = env.float("OCR_TIME_LIMIT", default=30.0)  # seconds per picture; then it is recorded as failed
OCR_MAX_SIDE = env.int("OCR_MAX_SIDE", default=1600)  # px: pictures are shrunk to this before reading
OCR_THREADS = env.int("OCR_THREADS", default=0)  # 0: the engine's default
OCR_MAX_PER_RUN = env.int("OCR_MAX_PER_RUN", default=500)  # pictures one DAG run reads; the next run goes on

# --- REST API ------------------------------------------------------------------------------
# How many proxies in front of the app append the client's address to X-Forwarded-For; 0 (the
# default): the header is ignored and throttles count REMOTE_ADDR (README, "Security").
GALLERY_TRUSTED_PROXIES = env.int("GALLERY_TRUSTED_PROXIES", default=0)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: DRF answers a refused or missing login with the first class's
        # WWW-Authenticate header, so an expired or revoked token is a 401 (ask again), not a 403.
        "gallery.api.authentication.ExpiringTokenAuthentication",  # programs
        "rest_framework.authentication.SessionAuthentication",  # the browser
    ],
    "DEFAULT_PERMISSION_CLASSES": ["gallery.api.permissions.CanView"],
    "EXCEPTION_HANDLER": "gallery.api.exceptions.exception_handler",
    # One request content type per operation, so the schema lists one and generated clients send
    # one body: JSON unless a view takes files (those set multipart themselves).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "gallery.api.pagination.GalleryPagination",
    # DRF's own use of X-Forwarded-For follows the gallery's (gallery.http.throttles.client_address).
    "NUM_PROXIES": GALLERY_TRUSTED_PROXIES,
}
# The access policy (gallery/catalogue/access.py): reading and searching need a login too when set, on
# pages, API and media alike. API_REQUIRE_LOGIN is its former, API-only name.
GALLERY_REQUIRE_LOGIN = env.bool("GALLERY_REQUIRE_LOGIN", default=env.bool("API_REQUIRE_LOGIN", default=False))
# Throttles for pages and API together, per user (or address): searches, uploads, password guesses.
API_SEARCH_RATE = env.str("API_SEARCH_RATE", default="120/min")
API_UPLOAD_RATE = env.str("API_UPLOAD_RATE", default="60/min")
API_SIGN_IN_RATE = env.str("API_SIGN_IN_RATE", default="10/min")
# Saving a search, per member (page and API): each saved search is scored against every new
# image, so they are capped per member and their creation is throttled.
API_SAVED_SEARCH_RATE = env.str("API_SAVED_SEARCH_RATE", default="30/hour")
SAVED_SEARCHES_PER_USER = env.int("SAVED_SEARCHES_PER_USER", default=100)
API_TOKEN_LIFETIME_DAYS = env.int("API_TOKEN_LIFETIME_DAYS", default=90)
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=100)
SPECTACULAR_SETTINGS = {
    "TITLE": "Search Image API",
    "DESCRIPTION": "Upload photos and find them by text, by example image, or both.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from the drf-spectacular-sidecar package: works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and its docs page follow the access policy (closed with GALLERY_REQUIRE_LOGIN).
    "SERVE_PERMISSIONS": ["gallery.api.permissions.CanView"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # Server errors with their traceback on the console, also when DEBUG is off.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "gallery": {"handlers": ["console"], "level": env.str("GALLERY_LOG_LEVEL", default="INFO"), "propagate": False},
        "indexer": {"handlers": ["console"], "level": env.str("GALLERY_LOG_LEVEL", default="INFO"), "propagate": False},
    },
}

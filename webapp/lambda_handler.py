"""The web tier as an AWS Lambda function behind API Gateway (REST or HTTP API), via apig-wsgi.

Deploy the Docker image with this as its handler (`webapp.lambda_handler.handler`), S3 storage
and a PostgreSQL DATABASE_URL. A function instance keeps nothing but its caches: the model loads
on its first search and the current index is fetched from the bucket into INDEX_CACHE_DIR
(/tmp on Lambda) once, then memory-mapped.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
os.environ.setdefault("GALLERY_VAR_DIR", "/tmp/gallery")  # the only writable place on Lambda

from apig_wsgi import make_lambda_handler  # noqa: E402

from webapp.wsgi import application  # noqa: E402  (the WSGI entry point's process set-up too)

handler = make_lambda_handler(application, binary_support=True)

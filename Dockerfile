# The gallery's container images, installed with the README's own steps: scripts/install into
# /app/.venv, torch first and CPU-only (constraints.txt pins torch==2.13.0+cpu).
#
#   full (the default target): web tier, Airflow DAG runner and the demo (`scripts/run`)
#   web: the slim web tier without torch (`scripts/install --web`, requirements-web.txt)
#
# `scripts/build-image` builds them with docker, or with buildah where no Docker engine runs.
#   BASE_IMAGE: a Debian-based image with Python 3.11 and its venv module.
#   TORCH_INDEX_URL: where pip finds the +cpu torch wheel: PyTorch's CPU index, or empty when the
#     build machine's own pip configuration provides it (scripts/build-image mounts it read-only).
ARG BASE_IMAGE=python:3.11-slim

# Installs happen here, with a compiler (annoy builds from source); the images only get the venv.
FROM ${BASE_IMAGE} AS build
# annoy compiles with -march=native unless told otherwise: an image built on an AVX-512 machine
# would stop with "illegal instruction" on an older CPU. Its own flags, for any x86-64 CPU with
# AVX2 (x86-64-v3: Intel Haswell, AMD Zen and later); ANNOY_MARCH= (empty) for other architectures.
ARG ANNOY_MARCH=x86-64-v3
ENV ANNOY_COMPILER_ARGS=-D_CRT_SECURE_NO_WARNINGS,-fpermissive,-O3,-ffast-math,-fno-associative-math,-DANNOYLIB_MULTITHREADED_BUILD,-std=c++14${ANNOY_MARCH:+,-march=$ANNOY_MARCH}
# Debian's own python3 keeps its C headers in python3-dev (python:3.11-slim ships them).
RUN headers="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"; \
    apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make \
       $([ -f "$headers" ] || echo python3-dev) >/dev/null \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY constraints.txt requirements.txt ./
COPY scripts/install scripts/install

FROM build AS full-venv
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN if [ -n "$TORCH_INDEX_URL" ]; then export PIP_EXTRA_INDEX_URL="$TORCH_INDEX_URL"; fi; \
    PIP_NO_CACHE_DIR=1 scripts/install

FROM build AS web-venv
COPY requirements-web.txt ./
RUN PIP_NO_CACHE_DIR=1 scripts/install --web
# Static files are collected at build time, into the image (a function's disk is read-only).
COPY . .
RUN DJANGO_SECRET_KEY=collectstatic-only DJANGO_STATIC_ROOT=/app/static \
    .venv/bin/python manage.py collectstatic --noinput -v0

FROM ${BASE_IMAGE} AS runtime
# The app runs unprivileged: only /app/var (database, media, caches, Airflow home) is writable.
RUN useradd --create-home --uid 1000 gallery \
    && mkdir -p /app/var && chown gallery:gallery /app/var
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH GALLERY_BIND=0.0.0.0:8000
EXPOSE 8000

# The slim web tier: search and uploads through ONNX Runtime (export the model first with
# `manage.py export_onnx` from the full image). Set DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS,
# DATABASE_URL and storage; on AWS Lambda, the command webapp.lambda_handler.handler.
FROM runtime AS web
COPY --from=web-venv /app/.venv /app/.venv
COPY --from=web-venv /app/static /app/static
COPY . .
ENV CLIP_RUNTIME=onnx DJANGO_STATIC_ROOT=/app/static
USER gallery
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "1", "--threads", "4", "--timeout", "120", "--access-logfile", "-"]

# Everything: `scripts/run` imports the sample photos and serves the gallery as `make run` does
# (mount a volume on /app/var to keep the data); `scripts/airflow ...` runs the indexing DAG.
FROM runtime AS full
COPY --from=full-venv /app/.venv /app/.venv
COPY . .
# No DJANGO_ALLOWED_HOSTS=*: the default (127.0.0.1, localhost) serves the demo on a published
# local port; a deployment names its host (the settings refuse * outside debug).
USER gallery
CMD ["scripts/run"]

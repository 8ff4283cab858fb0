# The same install steps as the README: scripts/install, with the CPU-only torch pinned by
# constraints.txt. On a machine outside this workplace the +cpu wheel comes from PyTorch's
# CPU wheel index, passed as an extra index.
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends g++ make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY constraints.txt requirements.txt requirements-dev.txt ./
COPY scripts/install scripts/install
RUN scripts/install
COPY . .
ENV GALLERY_BIND=0.0.0.0:8000 DJANGO_ALLOWED_HOSTS=*
EXPOSE 8000
# Imports the sample photos and serves the gallery, as `make run` does (mount /app/var to keep data).
CMD ["scripts/run"]

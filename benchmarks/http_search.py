"""HTTP search latency: the app under gunicorn on loopback, with an index of N images, and a
bounded load generator on the same machine.

    .venv/bin/python -m benchmarks.http_search [--items 100000] [--requests 40] [--concurrency 4]

Measures text search (new queries, and repeated ones served from the text-vector cache),
"similar to image id" and search by an uploaded image through /api/v1/, and compares text search
with its floor: the server's own encoding of each new query (its Server-Timing header).
The rows are synthetic (vectors shaped like CLIP's); the model is ViT-B-32 with random weights,
which costs what real weights cost.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from benchmarks.report import server_timing

ROOT = Path(__file__).resolve().parent.parent
WORDS = "red blue green small large old new wooden metal shiny running sitting cat dog car bicycle salad table shoe beach mountain city night".split()


def setup_database(var: Path, items: int) -> None:
    """Migrate, insert `items` indexed rows with vectors, publish an index (in this process)."""
    import django

    django.setup()
    from django.core.management import call_command

    from benchmarks.index import clip_like_vectors
    from gallery.engine import embedder
    from gallery.indexing import index_publish
    from gallery.models import Image

    call_command("migrate", verbosity=0)
    vectors = clip_like_vectors(items, dim=embedder.embedder().dim)
    model_id = embedder.embedder().model_id
    batch = []
    for n, vector in enumerate(vectors):
        batch.append(Image(
            file=f"originals/{n}.jpg", thumbnail=f"thumbnails/{n}.jpg", sha256=uuid.uuid4().hex + uuid.uuid4().hex,
            title=f"Photo {n}", width=640, height=480, size_bytes=1, status=Image.Status.PENDING,
            embedding=vector.tobytes(), embedding_model=model_id,
        ))
        if len(batch) == 5000:
            Image.objects.bulk_create(batch)
            batch = []
    Image.objects.bulk_create(batch)
    started = time.perf_counter()
    index_publish(force=True)
    print(f"index of {items:,} built and published in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def request(url: str, *, body: bytes | None = None, content_type: str = "") -> float:
    req = urllib.request.Request(url, data=body)
    if content_type:
        req.add_header("Content-Type", content_type)
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as response:
        response.read()
        assert response.status == 200, response.status
    elapsed = time.perf_counter() - started
    ENCODED.append((elapsed, server_timing(response.headers).get("encode", 0.0)))
    return elapsed


ENCODED: list[tuple[float, float]] = []  # (seconds, of which the server's text encoder) per request


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def run_load(urls, concurrency: int, **kwargs) -> tuple[list[float], float]:
    """Send each url once, `concurrency` at a time; return latencies and requests/s."""
    latencies, lock, queue = [], threading.Lock(), list(urls)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                url = queue.pop()
            elapsed = request(url, **kwargs)
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies) / (time.perf_counter() - started)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnx", "onnx-int8"])
    args = parser.parse_args(argv)
    from benchmarks.report import machine, percentile_ms, table
    from benchmarks.scratch_gallery import scratch_settings

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            **scratch_settings(tmp, model=args.model, config_dir=args.config_dir),
            "API_SEARCH_RATE": "1000000/min",
            "CLIP_RUNTIME": "torch",  # until the export exists
            "SERVER_TIMING": "true",  # each answer says how long its text encoding took
        }
        os.environ.update(env)
        setup_database(Path(tmp), args.items)
        if args.runtime != "torch":
            from django.core.management import call_command

            call_command("export_onnx", "--int8-variants", "dynamic,dynamic-per-channel", verbosity=0)
            env["CLIP_RUNTIME"] = os.environ["CLIP_RUNTIME"] = args.runtime
            from django.conf import settings

            settings.CLIP_RUNTIME = args.runtime
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "webapp.wsgi", "--bind", f"127.0.0.1:{args.port}", "--workers", "1",
             "--threads", str(args.concurrency), "--log-level", "warning"],
            cwd=ROOT, env=env,
        )
        base = f"http://127.0.0.1:{args.port}/api/v1"
        try:
            for _ in range(120):
                try:
                    request(f"{base}/index/")
                    break
                except OSError:
                    time.sleep(0.5)
            request(f"{base}/search/?q=warm+up")  # loads the model and the index
            n = args.requests
            rows = []

            def row(name, urls, concurrency=1, **kwargs):
                latencies, rate = run_load(urls, concurrency, **kwargs)
                rows.append([name, concurrency, len(latencies), percentile_ms(latencies, 50), percentile_ms(latencies, 99), rate])
                return latencies

            ENCODED.clear()
            row("text, new queries", [f"{base}/search/?q={WORDS[i % 23]}+{WORDS[(i * 7) % 23]}+{i}" for i in range(n)])
            floor, beyond = [encode for _, encode in ENCODED], [elapsed - encode for elapsed, encode in ENCODED]
            row("text, repeated query", [f"{base}/search/?q=a+red+bicycle"] * n)
            row("similar to image id", [f"{base}/images/{1 + (i * 2477) % args.items}/similar/" for i in range(n)])
            photo = io.BytesIO()
            from PIL import Image

            from gallery.catalogue.samples import available_samples

            Image.open(available_samples()[1].path).convert("RGB").save(photo, format="JPEG", quality=90)
            body, content_type = multipart(photo.getvalue())
            row("search by uploaded image", [f"{base}/search/image/"] * (n // 2), body=body, content_type=content_type)
            row("text, new queries", [f"{base}/search/?q=load+{i}+{WORDS[i % 23]}" for i in range(n)], args.concurrency)
            row("text, repeated query", [f"{base}/search/?q=a+red+bicycle"] * n * 2, args.concurrency)
        finally:
            server.terminate()
            server.wait(timeout=30)
    out = "\n".join(
        [
            f"HTTP search through gunicorn (1 worker, {args.concurrency} threads) on loopback, {args.items:,} images, "
            f"{args.model} ({args.runtime}) on CPU: {machine()}",
            "",
            table(["request", "concurrency", "requests", "p50 ms", "p99 ms", "req/s"], rows),
            "",
            f"Text-encoder floor (the server's own encoding of each new query, from its Server-Timing header): "
            f"p50 {percentile_ms(floor, 50):.1f} ms. A new text search beyond its encoding: p50 {percentile_ms(beyond, 50):.1f} ms.",
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

"""The DAG's embedding on Celery workers: does each mapped `embed` chunk run on a worker of its
own, in parallel, and is the result the same as with one worker? And how fast is it?

    .venv/bin/python -m benchmarks.celery_embedding [--images 400] [--chunk 50]
        [--workers 1,2] [--threads 0] [--model ViT-B-32 --pretrained random]

For each worker count it starts scripts/celery-cluster (CeleryExecutor, Redis broker,
PostgreSQL metadata), resets the gallery's vectors, triggers the `search_index` DAG, waits for
it, and reads who ran what: the worker Airflow recorded for each `embed` task instance, and the
"embedded N images" line in that task's own log file. Throughput is images over the wall time
of the embed stage (first chunk start to last chunk end). The vectors of every run are compared
with the first run's.

The gallery lives in its own PostgreSQL database (gallery_celery, recreated) and a temporary
media folder, with generated JPEG photos-like images (gradients, shapes, noise: distinct files).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.backends import cpu
from benchmarks.report import table

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://root@127.0.0.1:5432"


def worker_hostname() -> str:
    """Airflow's ``hostname_callable`` on this machine's workers (scripts/celery-cluster): several
    workers on one host get names of their own in the task instances they run."""
    return os.environ.get("CELERY_WORKER_NAME") or socket.getfqdn()


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        width, height = 640, 480
        x = np.linspace(0, 1, width)[None, :, None]
        y = np.linspace(0, 1, height)[:, None, None]
        base = rng.uniform(0, 255, size=(1, 1, 3)) * (1 - x) + rng.uniform(0, 255, size=(1, 1, 3)) * y
        pixels = np.clip(base + rng.normal(0, 12, size=(height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 7))):
            x0, y0 = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
            box = [x0, y0, x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(30, 250))]
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        image.save(folder / f"img{n:05d}.jpg", quality=88)


def sql(database: str, query: str, params=(), *, fetch: bool = True):
    import psycopg

    with psycopg.connect(f"{PG}/{database}", autocommit=True) as connection:
        cursor = connection.execute(query, params)
        return cursor.fetchall() if fetch else None


def recreate_database(name: str) -> None:
    sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', fetch=False)
    sql("postgres", f'CREATE DATABASE "{name}"', fetch=False)


def run(command: list[str], env: dict, *, timeout: int = 600) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def wait_for(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")


def one_run(workers: int, env: dict, home: Path, airflow_db: str, gallery_db: str, images: int) -> dict:
    """Reset the vectors, start `workers` workers, run the DAG once, read what happened."""
    sql(gallery_db, "UPDATE gallery_image SET embedding = NULL, embedding_model = '', embedded_at = NULL, "
        "status = 'pending', error = ''", fetch=False)
    sql(gallery_db, "DELETE FROM gallery_indexversion", fetch=False)
    cluster = [str(ROOT / "scripts" / "celery-cluster")]
    run([*cluster, "start", str(workers)], env, timeout=300)
    try:
        wait_for("the DAG to be parsed", lambda: sql(airflow_db, "SELECT 1 FROM dag WHERE dag_id = 'search_index' "
                                                     "AND NOT is_paused"), 240)
        cli_env = {**env, **_cluster_env(env)}
        wait_for(f"{workers} Celery worker(s)", lambda: workers_answering(cli_env) >= workers, 180, every=3)
        run_id = f"celery_{workers}w_{uuid.uuid4().hex[:6]}"
        run([str(ROOT / "scripts" / "airflow"), "dags", "trigger", "search_index", "--run-id", run_id], cli_env)
        state = wait_for("the DAG run", lambda: run_state(airflow_db, run_id), 1800, every=3)
        tasks = sql(airflow_db, "SELECT task_id, map_index, hostname, start_date, end_date, state, try_number "
                    "FROM task_instance WHERE run_id = %s ORDER BY task_id, map_index", [run_id])
    finally:
        run([*cluster, "stop"], env, timeout=300)
    embeds = [t for t in tasks if t[0] == "embed"]
    if state != "success" or any(t[5] != "success" for t in embeds):
        raise RuntimeError(f"run {run_id} ended {state}: {tasks}")
    chunks = []
    for task_id, map_index, hostname, start, end, _, try_number in embeds:
        log = home / "logs" / "dag_id=search_index" / f"run_id={run_id}" / "task_id=embed" / f"map_index={map_index}" / f"attempt={try_number}.log"
        said = re.search(r"embedded (\d+) images \((\d+) failed\) in ([\d.]+) s, ([\d.]+) images/s", log.read_text())
        chunks.append({"chunk": map_index, "worker": hostname, "seconds": (end - start).total_seconds(),
                       "embedded": int(said.group(1)), "log_rate": float(said.group(4)), "log": log})
    wall = (max(t[4] for t in embeds) - min(t[3] for t in embeds)).total_seconds()
    vectors = dict(sql(gallery_db, "SELECT id, embedding FROM gallery_image WHERE embedding IS NOT NULL"))
    indexed = sql(gallery_db, "SELECT count(*) FROM gallery_image WHERE status = 'indexed'")[0][0]
    return {"workers": workers, "run_id": run_id, "chunks": chunks, "wall": wall, "rate": images / wall,
            "vectors": {pk: np.frombuffer(bytes(blob), dtype=np.float32) for pk, blob in vectors.items()},
            "indexed": indexed}


def workers_answering(env: dict) -> int:
    done = subprocess.run([str(ROOT / ".venv/bin/celery"), "--broker", env["AIRFLOW__CELERY__BROKER_URL"], "inspect",
                           "ping", "--timeout", "3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.stdout.count("pong")


def run_state(airflow_db: str, run_id: str) -> str | None:
    """The run's state once it has finished, else None."""
    rows = sql(airflow_db, "SELECT state FROM dag_run WHERE run_id = %s", [run_id])
    return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None


def _cluster_env(env: dict) -> dict:
    """The AIRFLOW_* variables scripts/celery-cluster sets, as a dict."""
    out = run([str(ROOT / "scripts" / "celery-cluster"), "env"], env)
    values = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip('"')
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", value)
        values[name] = env.get(match.group(1), match.group(2)) if match else value
    return values


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--chunk", type=int, default=50, help="INDEX_EMBED_CHUNK_SIZE")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--config-dir", default="", help="CLIP_MODEL_CONFIG_DIR (tests/clip_configs for tiny-test)")
    parser.add_argument("--gallery-db", default="gallery_celery")
    parser.add_argument("--airflow-db", default="airflow_celery")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    header = f"{args.model} ({args.pretrained}) on CPU, {args.images} images in chunks of {args.chunk}; {cpu()}"
    print(header, flush=True)
    work = Path(tempfile.mkdtemp(prefix="celery-embedding-"))
    home = work / "airflow"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "DJANGO_SECRET_KEY": "celery-demonstration",
        "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{args.gallery_db}",
        "DJANGO_MEDIA_ROOT": str(work / "media"),
        "INDEX_CACHE_DIR": str(work / "index-cache"),
        "CLIP_MODEL": args.model,
        "CLIP_PRETRAINED": args.pretrained,
        "CLIP_MODEL_CONFIG_DIR": args.config_dir,
        "INDEX_EMBED_CHUNK_SIZE": str(args.chunk),
        "INDEX_DAG_RETRIES": "0",
        # No scheduled run may start on its own: only the triggered ones are measured.
        "INDEX_DAG_SCHEDULE": "0 0 31 12 *",
        "CELERY_CLUSTER_HOME": str(home),
        "CELERY_CLUSTER_DB": args.airflow_db,
        "CELERY_CLUSTER_PORT": str(args.port),
    }
    if args.threads:
        env["CELERY_WORKER_THREADS"] = str(args.threads)
    try:
        recreate_database(args.gallery_db)
        recreate_database(args.airflow_db)
        run([str(ROOT / ".venv/bin/python"), "manage.py", "migrate", "--noinput", "-v0"], env)
        make_images(work / "photos", args.images)
        print(run([str(ROOT / ".venv/bin/python"), "manage.py", "import_images", str(work / "photos"), "-v0"], env).strip())
        runs = [one_run(int(n), env, home, args.airflow_db, args.gallery_db, args.images) for n in args.workers.split(",")]
    except BaseException:
        print(f"kept {work} (Airflow home, logs, media) to look into", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    first = runs[0]
    rows, details = [], []
    for result in runs:
        ids = sorted(first["vectors"])
        same_ids = sorted(result["vectors"]) == ids
        a = np.vstack([first["vectors"][pk] for pk in ids])
        b = np.vstack([result["vectors"][pk] for pk in ids]) if same_ids else a * np.nan
        cosine = float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
        per_worker = {}
        for chunk in result["chunks"]:
            per_worker[chunk["worker"]] = per_worker.get(chunk["worker"], 0) + 1
        rows.append([result["workers"], args.threads or "default", len(result["chunks"]),
                     ", ".join(f"{w}: {n}" for w, n in sorted(per_worker.items())), result["wall"], result["rate"],
                     result["rate"] / first["rate"], len(result["vectors"]), result["indexed"], f"{cosine:.6f}"])
        for chunk in result["chunks"]:
            details.append([result["workers"], chunk["chunk"], chunk["worker"], chunk["embedded"], chunk["seconds"],
                            chunk["log_rate"]])
    out = "\n".join([
        header,
        "",
        table(["workers", "torch threads", "chunks", "chunks per worker", "embed stage s", "images/s", "vs first",
               "vectors", "indexed", "min cosine to first run"], rows),
        "",
        "Each embed task: the worker Airflow recorded for it, and its own log's line",
        "",
        table(["workers", "chunk", "ran on", "embedded", "task s", "images/s (task log)"], details),
    ])
    print(out)
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)

"""Per-request costs of the product at 10k, 100k and 1M images, through gunicorn over HTTP.

    .venv/bin/python -m benchmarks.scale [--sizes 10000,1000000] [--database sqlite|postgres]
        [--requests 15] [--port 18000] [--cache-dir /tmp/scale-galleries]

Each gallery holds ``size`` synthetic rows as ``benchmarks.fresh_segment.add_rows`` makes them
(titles "Photo N", CLIP-shaped unit vectors from ``benchmarks.index.clip_like_vectors``, one row
in 997 hidden), published as an Annoy index, plus 500 fresh rows embedded after it (the fresh
segment), a member with 3 saved searches of 1,000 matches each (spread over the gallery), and real small JPEG
files for the rows whose files are fetched. Rows go in with ``executemany`` on SQLite and
``COPY`` on PostgreSQL; a built gallery is kept under ``--cache-dir`` (keyed by database, model
and size), so a rerun only measures. PostgreSQL galleries are databases named
``<--pg-database>_<size>``.

The app runs under gunicorn (1 worker x 4 threads, as in the issue's table) on 127.0.0.1; each
request is sent ``--requests`` times one after another after one warm-up, and the median is
reported with its ratio to the first size. New text searches pay the text encoder: the server
reports its own encoding time per request (``Server-Timing``, SERVER_TIMING=true), and the search's
cost beyond it is reported per size, with how much of the index's files the server had mapped in
2 MB pages (the index query's cost depends on it: docs/performance.md, section 30).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks.report import server_timing

ROOT = Path(__file__).resolve().parent.parent
FRESH_ROWS = 500
SAVED_SEARCHES = 3
# Per saved search, spread over the gallery: the most its list counts (the count stops at 1,000),
# the same at every size, so that the ratios measure the gallery's size, not the matches'.
MATCHES = 1000
HIDDEN_EVERY = 997
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
WORDS = "red blue green small large old new wooden metal shiny running sitting cat dog car bicycle salad table shoe beach mountain city night".split()


# --- Building a gallery (in a subprocess: one Django per gallery) ----------------------------


def gallery_env(folder: Path, *, size: int, database: str, pg_url: str, model: str, config_dir: str) -> dict[str, str]:
    from benchmarks.scratch_gallery import scratch_settings

    env = scratch_settings(str(folder), model=model, config_dir=config_dir)
    if database == "postgres":
        env["DATABASE_URL"] = f"{pg_url.rstrip('/')}_{size}"
    env.update({"DJANGO_STATIC_ROOT": str(folder.parent / "static"), "API_SEARCH_RATE": "1000000/min", "CLIP_RUNTIME": "torch", "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                # the server's own encoder time per search (gallery.http.server_timing), to subtract
                "SERVER_TIMING": "true"})
    return env


def build(size: int, info_path: Path) -> dict:
    """Migrate and fill this process's gallery (DATABASE_URL and GALLERY_VAR_DIR are set)."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from gallery.engine import embedder
    from gallery.indexing import index_publish
    from gallery.models import Image

    if connection.vendor == "postgresql":
        _create_database(connection.settings_dict)
    call_command("migrate", verbosity=0)
    if not (Path(os.environ["DJANGO_STATIC_ROOT"]) / "staticfiles.json").exists():
        call_command("collectstatic", interactive=False, verbosity=0)  # the pages' manifest storage needs it
    model = embedder.embedder()
    model_id, dim = model.model_id, model.dim
    if Image.objects.exists():
        raise SystemExit(f"{connection.settings_dict['NAME']} already holds images; remove it to build again")
    started = time.perf_counter()
    insert_rows(0, size, model_id=model_id, dim=dim, status=Image.Status.PENDING)
    inserted = time.perf_counter() - started
    print(f"{size:,} rows inserted in {inserted:.0f} s", file=sys.stderr, flush=True)
    started = time.perf_counter()
    index_publish(force=True)
    published = time.perf_counter() - started
    print(f"index published in {published:.0f} s", file=sys.stderr, flush=True)
    insert_rows(size, FRESH_ROWS, model_id=model_id, dim=dim, status=Image.Status.PENDING)  # the fresh segment
    info = {"size": size, "vendor": connection.vendor, "model": model_id, "insert_s": inserted, "publish_s": published}
    info |= _requests_targets(size)
    if connection.vendor == "postgresql":
        # What autovacuum does to a real gallery in its own time: publishing marked every row
        # indexed, leaving a dead tuple each (1M here), and the fresh segment's partial index
        # walked them all (6.6 ms at 1M, 0.45 ms after this).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    info_path.write_text(json.dumps(info, indent=1))
    return info


def insert_rows(start: int, count: int, *, model_id: str, dim: int, status: str) -> None:
    """``count`` rows with ids ``start + 1`` on, newest last, in chunks: ``executemany`` on
    SQLite (and its full-text table), ``COPY`` on PostgreSQL. Every concrete column gets a
    value (a column this script does not know gets the field's default)."""
    from django.db import connection, transaction

    from benchmarks.index import clip_like_vectors
    from gallery.catalogue.keywords import FTS_TABLE
    from gallery.models import Image

    fields = [field for field in Image._meta.concrete_fields]
    names = [field.column for field in fields]
    defaults = {field.column: field.get_db_prep_save(field.get_default(), connection) for field in fields}
    to_db = connection.ops.adapt_datetimefield_value
    chunk = 50_000
    for first in range(start, start + count, chunk):
        n_rows = min(chunk, start + count - first)
        vectors = clip_like_vectors(n_rows, dim=dim, seed=1 + first // chunk)
        rows = []
        for offset in range(n_rows):
            n = first + offset
            at = to_db(START + timedelta(seconds=n))
            values = defaults | {
                "id": n + 1, "file": f"originals/{n}.jpg", "thumbnail": f"thumbnails/{n}.jpg", "sha256": f"{n:064x}",
                "title": f"Photo {n}", "description": "", "width": 640, "height": 480, "size_bytes": 1,
                "uploaded_at": at, "taken_at": at, "taken_at_source": "upload", "status": status, "error": "", "embedding": vectors[offset].tobytes(),
                "embedding_model": model_id, "embedded_at": at, "hidden": n % HIDDEN_EVERY == HIDDEN_EVERY - 1,
                "tag_names": "",
            }
            rows.append([values[name] for name in names])
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor, cursor.cursor.copy(
                    f"COPY gallery_image ({', '.join(names)}) FROM STDIN"
                ) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["?"] * len(names))
                raw = connection.connection
                raw.executemany(f"INSERT INTO gallery_image ({', '.join(names)}) VALUES ({marks})", rows)
                raw.execute(
                    f"INSERT INTO {FTS_TABLE} (rowid, title, tags, description) "
                    "SELECT id, title, tag_names, description FROM gallery_image WHERE id > ? AND id <= ?",
                    [first, first + n_rows],
                )
        print(f"  {first + n_rows - start:,} / {count:,} rows", file=sys.stderr, flush=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('gallery_image', 'id'), %s)", [start + count])


def _create_database(settings_dict: dict) -> None:
    import psycopg

    name = settings_dict["NAME"]
    with psycopg.connect(
        host=settings_dict["HOST"], port=settings_dict["PORT"] or 5432, user=settings_dict["USER"], dbname="postgres",
        autocommit=True,
    ) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def _requests_targets(size: int) -> dict:
    """What the requests ask for: cursors of deep pages, an image, real files, a member."""
    import io

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from PIL import Image as Picture
    from rest_framework.authtoken.models import Token
    from rest_framework.pagination import Cursor

    from gallery.api.pagination import ImageListPagination
    from gallery.models import Image, SavedSearch, SavedSearchMatch

    newest_first = Image.objects.filter(hidden=False).order_by("-uploaded_at", "-pk")
    # The last row of page 49: page 50 follows it (the middle, in a gallery too small for 50 pages).
    page_50 = newest_first[min(49 * settings.SEARCH_PAGE_SIZE, size // 2) - 1]
    middle = newest_first.filter(pk__lte=size // 2).first()
    paginator = ImageListPagination()
    paginator.base_url = "http://127.0.0.1/api/v1/images/"

    def cursor_after(image) -> str:
        """The cursor of the page that follows ``image`` (grid and API page alike)."""
        link = paginator.encode_cursor(Cursor(offset=0, reverse=False, position=str(image.uploaded_at)))
        return link.split("cursor=")[1]

    target = Image.objects.filter(pk__lte=size // 3, hidden=False).order_by("-pk").first()
    # Real files for the rows whose files are fetched, and for the first page's thumbnails.
    photo, thumb = io.BytesIO(), io.BytesIO()
    Picture.new("RGB", (640, 480), (200, 80, 40)).save(photo, "JPEG", quality=85)
    Picture.new("RGB", (256, 192), (200, 80, 40)).save(thumb, "JPEG", quality=85)
    for image in [target, *newest_first[:32]]:
        for name, data in ((image.file.name, photo), (image.thumbnail.name, thumb)):
            if not default_storage.exists(name):
                default_storage.save(name, ContentFile(data.getvalue()))
    member = get_user_model().objects.create_user("scale-member", password="scale-member-pw")
    token = Token.objects.create(user=member)
    session = SessionStore()
    session.update({SESSION_KEY: str(member.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: member.get_session_auth_hash()})
    session.create()
    every = max(1, size // MATCHES)
    saved_ids = []
    for n, text in enumerate(["a red bicycle", "a dog on the beach", "city at night"][:SAVED_SEARCHES]):
        saved = SavedSearch.objects.create(user=member, text=text)
        SavedSearch.objects.filter(pk=saved.pk).update(created_at=START, last_seen_at=START + timedelta(seconds=size // 2))
        matches = [
            SavedSearchMatch(saved_search=saved, image_id=pk, score=0.3) for pk in range(1 + n, size + 1, every)[:MATCHES]
        ]
        SavedSearchMatch.objects.bulk_create(matches, batch_size=5000)
        saved_ids.append(saved.pk)
    return {
        "page_50": cursor_after(page_50), "api_cursor": cursor_after(middle),
        "image": target.pk, "original": target.file.name, "thumbnail": target.thumbnail.name,
        "session": session.session_key, "token": token.key, "saved": saved_ids[0],
    }


def status_count_ms(rounds: int = 3) -> float:
    """The status counts read from the database (a cache miss), in this process."""
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command

    from gallery.catalogue.status import index_counts

    call_command("migrate", verbosity=0)  # a gallery cached before a new migration gets it

    times = []
    for _ in range(rounds):
        cache.clear()
        started = time.perf_counter()
        index_counts()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# --- Measuring ---------------------------------------------------------------------------------


class Timed(float):
    """A request's seconds, with the server's own ``Server-Timing`` figures (in seconds)."""

    server: dict[str, float]


def fetch(url: str, *, headers: dict | None = None, expect: int = 200) -> Timed:
    req = urllib.request.Request(url, headers=headers or {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            response.read()
            status, answer = response.status, response.headers
    except urllib.error.HTTPError as exc:
        exc.read()
        status, answer = exc.code, exc.headers
    elapsed = Timed(time.perf_counter() - started)
    if status != expect:
        raise RuntimeError(f"{url}: {status}, expected {expect}")
    elapsed.server = server_timing(answer)
    return elapsed


def requests_for(base: str, info: dict, run: str) -> list[tuple[str, object]]:
    """(name, a function of the attempt number giving (url, headers, status expected))."""
    session = {"Cookie": f"sessionid={info['session']}"}
    token = {"Authorization": f"Token {info['token']}"}
    new_text = lambda n: f"{WORDS[n % 23]}+{WORDS[(n * 7) % 23]}+{run}+{n}"  # noqa: E731

    def another_image(n: int) -> int:
        """A visible image below the target, a different one for each attempt (even offsets;
        the odd one beside a hidden row)."""
        pk = info["image"] - 2 * (n + 2)
        return pk - 1 if pk % HIDDEN_EVERY == 0 else pk

    return [
        ("gallery page `/`", lambda n: (f"{base}/", {}, 200)),
        ("gallery page 50 (cursor)", lambda n: (f"{base}/?cursor={info['page_50']}", {}, 200)),
        ("gallery page in the middle", lambda n: (f"{base}/?cursor={info['api_cursor']}", {}, 200)),
        ("timeline `/?order=taken`", lambda n: (f"{base}/?order=taken", {}, 200)),
        ("timeline in the middle (cursor)", lambda n: (f"{base}/?order=taken&cursor={info['api_cursor']}", {}, 200)),
        ("timeline, one day", lambda n: (f"{base}/?order=taken&taken_after=2025-01-01&taken_before=2025-01-01", {}, 200)),
        ("API image list, first page", lambda n: (f"{base}/api/v1/images/", {}, 200)),
        ("API image list, middle (cursor)", lambda n: (f"{base}/api/v1/images/?cursor={info['api_cursor']}", {}, 200)),
        ("image page with more like this", lambda n: (f"{base}/images/{info['image']}/", {}, 200)),
        ("search page, new text", lambda n: (f"{base}/search/?q=page+{new_text(n)}", {}, 200)),
        ("search page, repeated text", lambda n: (f"{base}/search/?q=a+red+bicycle", {}, 200)),
        ("API search, new text", lambda n: (f"{base}/api/v1/search/?q=api+{new_text(n)}", {}, 200)),
        ("API search, repeated text", lambda n: (f"{base}/api/v1/search/?q=a+red+bicycle", {}, 200)),
        # every title holds "Photo": the words' ranking meets the most matches it can
        ("API search, a word in every title", lambda n: (f"{base}/api/v1/search/?q=photo", {}, 200)),
        # no title holds both: the any-word fallback (SQLite first counts each word's matches, to 10,001)
        ("API search, any-word fallback", lambda n: (f"{base}/api/v1/search/?q=photo+lighthouse", {}, 200)),
        ("API search, relevant only, newest taken first", lambda n: (f"{base}/api/v1/search/?q=a+red+bicycle&sort=newest", {}, 200)),
        ("API more like this", lambda n: (f"{base}/api/v1/images/{info['image']}/similar/", {}, 200)),
        # The same image's ranking is kept per snapshot (gallery.search.recent): another one asks the index.
        ("API more like this, another image each time", lambda n: (f"{base}/api/v1/images/{another_image(n)}/similar/", {}, 200)),
        ("one thumbnail", lambda n: (f"{base}/media/{info['thumbnail']}", {}, 200)),
        ("one original", lambda n: (f"{base}/media/{info['original']}", {}, 200)),
        ("a missing media path (404)", lambda n: (f"{base}/media/thumbnails/missing-{n}.jpg", {}, 404)),
        ("`/api/v1/index/` (status)", lambda n: (f"{base}/api/v1/index/", {}, 200)),
        ("saved-search page `/saved/`", lambda n: (f"{base}/saved/", session, 200)),
        ("API saved searches", lambda n: (f"{base}/api/v1/saved-searches/", token, 200)),
        ("API matches of a saved search", lambda n: (f"{base}/api/v1/saved-searches/{info['saved']}/matches/", token, 200)),
    ]


def start_server(env: dict, port: int) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "webapp.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "4", "--log-level", "warning", "--timeout", "300"],
        cwd=ROOT, env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            fetch(f"{base}/api/v1/index/")
            return server, base
        except (OSError, RuntimeError):
            if server.poll() is not None:
                raise RuntimeError("gunicorn exited") from None
            time.sleep(0.5)
    raise RuntimeError("gunicorn did not answer")


def index_pages(master: int, var_dir: str) -> tuple[float, float]:
    """(MB of the gallery's index files that gunicorn's workers under ``master`` have mapped, MB
    of them in 2 MB pages). The index query after the encoder costs less in 2 MB pages, and a
    page cache that read the files back page by page after pressure holds them in small ones
    (docs/performance.md, sections 29 and 30): this says which a run measured."""
    from benchmarks.report import mapped_kb, processes

    workers = [pid for pid, stat in processes().items() if stat[1] == str(master)]
    kb = [mapped_kb(pid, os.path.realpath(var_dir) + "/index-cache/") for pid in workers]
    return sum(k.get("Rss", 0) for k in kb) / 1024, sum(k.get("FilePmdMapped", 0) for k in kb) / 1024


def database_files(env: dict) -> list[Path]:
    """The gallery's database files: SQLite's file and its write-ahead log, or PostgreSQL's
    database directory (empty where its server will not say where that is, or it is not ours to
    read)."""
    import environ

    url = env.get("DATABASE_URL", "")
    config = environ.Env.db_url_config(url) if url else {}
    if config.get("ENGINE") == "django.db.backends.sqlite3":
        database = Path(config["NAME"])
        return [path for path in (database, Path(f"{database}-wal")) if path.exists()]
    if config.get("ENGINE") != "django.db.backends.postgresql":
        return []
    import psycopg

    try:
        with psycopg.connect(url) as connection:
            directory, oid = connection.execute(
                "SELECT current_setting('data_directory'), oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        return [path for path in (Path(directory) / "base" / str(oid)).iterdir() if path.is_file()]
    except (psycopg.Error, OSError):
        return []


def measure(galleries: dict[int, tuple[dict, dict]], *, port: int, repeats: int) -> tuple[dict, dict, dict]:
    """Every gallery's server runs at once and the sizes take turns request by request, so a
    load that comes and goes on a shared machine falls on all of them alike. Returns
    ({size: {request: [Timed]}}, {size: :func:`index_pages` of its server after the requests},
    {size: (MB of its database in the page cache before its server started, its MB) or None})."""
    from benchmarks.report import resident_mb

    servers, bases = [], {}
    times: dict = {size: {} for size in galleries}
    pages: dict = {}
    files = {size: database_files(env) for size, (env, _) in galleries.items()}
    cached = {size: resident_mb(files[size]) if files[size] else None for size in galleries}
    try:
        for n, (size, (env, _)) in enumerate(galleries.items()):
            server, bases[size] = start_server(env, port + n)
            servers.append(server)
        run = str(int(time.time()))
        plans = {size: requests_for(bases[size], info, f"{run}s{size}") for size, (_, info) in galleries.items()}
        for index, (name, _) in enumerate(next(iter(plans.values()))):
            for size in galleries:  # warm-up: model, index, fresh segment, caches
                url, headers, expect = plans[size][index][1](-1)
                fetch(url, headers=headers, expect=expect)
                times[size][name] = []
            for attempt in range(repeats):
                for size in galleries:
                    url, headers, expect = plans[size][index][1](attempt)
                    times[size][name].append(fetch(url, headers=headers, expect=expect))
        for server, (size, (env, _)) in zip(servers, galleries.items()):
            pages[size] = index_pages(server.pid, env["GALLERY_VAR_DIR"])
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=60)
    return times, pages, cached


def beyond_encoder(samples: list[Timed]) -> tuple[float, ...]:
    """Medians, in ms, of a search's time beyond its own text encoding (the server's
    ``Server-Timing: encode``: the floor, measured where it is paid), of that encoding, and of
    the index query (``index``) and the database (``db``) within the rest."""
    encodes = [sample.server.get("encode", 0.0) for sample in samples]
    beyond = statistics.median(sample - encode for sample, encode in zip(samples, encodes))
    part = lambda name: statistics.median(sample.server.get(name, 0.0) for sample in samples) * 1000  # noqa: E731
    return beyond * 1000, statistics.median(encodes) * 1000, part("index"), part("db")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default="postgres://root@127.0.0.1:5432/gallery_scaleweb")
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--cache-dir", default="/tmp/scale-galleries")
    parser.add_argument("--prepare", action="store_true", help="build the galleries missing from --cache-dir, measure nothing")
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="one size's server at a time (a quiet machine): no second server shares the cores")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the subprocess's part
    parser.add_argument("--count-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.build_only:
        build(sizes[0], Path(os.environ["GALLERY_VAR_DIR"]) / "info.json")
        return ""
    if args.count_only:
        print(json.dumps({"status_count_ms": status_count_ms()}))
        return ""

    from benchmarks.report import machine, table

    infos, galleries = {}, {}
    prepare = sizes
    for size in prepare:
        folder = Path(args.cache_dir) / f"{args.database}-{args.model}-{size}"
        env = gallery_env(folder, size=size, database=args.database, pg_url=args.pg_url, model=args.model,
                          config_dir=args.config_dir)
        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        info_path = folder / "info.json"
        if not info_path.exists():
            if args.database == "sqlite" and folder.exists():
                shutil.rmtree(folder)  # a build that did not finish (info.json is written last)
            folder.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "benchmarks.scale", "--build-only", "--sizes", str(size)],
                           cwd=ROOT, env=child_env, check=True)
            print(f"built the {size:,} gallery in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if args.prepare:
            continue
        infos[size] = json.loads(info_path.read_text())
        counted = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--count-only"], cwd=ROOT, env=child_env,
                                 check=True, capture_output=True, text=True)
        infos[size] |= json.loads(counted.stdout.strip().splitlines()[-1])
        galleries[size] = (env, infos[size])
    if args.prepare:
        return ""

    if args.one_at_a_time:
        # Two servers taking turns on 2 cores each evict the other's model and index from the
        # CPU's caches between requests; alone, each size is measured as it would run.
        results, pages, cached = {}, {}, {}
        for size in sizes:
            times, mapped, resident = measure({size: galleries[size]}, port=args.port, repeats=args.requests)
            results[size], pages[size], cached[size] = times[size], mapped[size], resident[size]
    else:
        results, pages, cached = measure(galleries, port=args.port, repeats=args.requests)
    cpu = machine()

    first = sizes[0]
    headers = ["request", *(f"{size:,} ms" for size in sizes), *(f"x {size:,}/{first:,}" for size in sizes[1:])]
    rows = []
    for name in results[first]:
        medians = [statistics.median(results[size][name]) * 1000 for size in sizes]
        rows.append([name, *medians, *(f"{m / medians[0]:.2f}" for m in medians[1:])])
    counts = [infos[size]["status_count_ms"] for size in sizes]
    rows.append(["status counts on a cache miss (in process)", *counts, *(f"{c / counts[0]:.2f}" for c in counts[1:])])
    search_rows = ["search page, new text", "API search, new text"]
    notes = [
        f"{name}: "
        + ", ".join("{:.1f} ms beyond its encoding ({:.1f} ms; of the rest, index query {:.1f} ms, database {:.1f} ms) at {:,}".format(*beyond_encoder(results[size][name]), size) for size in sizes)
        for name in search_rows
    ]
    out = "\n".join(
        [
            f"Per-request cost by gallery size: {args.database}, gunicorn 1 worker x 4 threads on 127.0.0.1, "
            f"median of {args.requests} sequential requests after one warm-up, "
            + ("one size's server at a time, " if args.one_at_a_time else "the sizes taking turns request by request, ")
            + f"{args.model} (torch, random weights)",
            f"CPU: {cpu}",
            "Load average when it finished: {:.1f}, {:.1f}, {:.1f} (other jobs on the machine move figures by a few ms).".format(*os.getloadavg()),
            "",
            table(headers, rows),
            "",
            "New text searches beyond the text encoder (the floor: the server's own encoding of that "
            "query, from its Server-Timing header; medians): " + "; ".join(notes) + ".",
            "The index's files as the server mapped them at the end (a query after the encoder costs less in 2 MB pages): "
            + ", ".join("{:,.2f} MB, {:,.2f} MB of it in 2 MB pages at {:,}".format(*pages[size], size) for size in sizes)
            + ".",
            "The gallery's database in the page cache before its server started (pages the kernel has kept since they "
            "were last read; a row or index page that is not costs a read from disk): "
            + ", ".join("{:,.1f} of {:,.1f} MB at {:,}".format(*cached[size], size) if cached[size] else f"not known at {size:,}" for size in sizes)
            + ".",
            "Slowest of the status requests (one may count on a cache miss): "
            + ", ".join(f"{max(results[size]['`/api/v1/index/` (status)']) * 1000:.1f} ms at {size:,}" for size in sizes)
            + ".",
            "Gallery build (rows inserted; index published): "
            + ", ".join(f"{size:,}: {infos[size]['insert_s']:.0f} s; {infos[size]['publish_s']:.0f} s" for size in sizes)
            + ".",
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()

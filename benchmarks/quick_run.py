"""One upload's quick run: every task a DAG run started by uploads executes, by gallery size.

    .venv/bin/python -m benchmarks.quick_run [--items 10000,100000,1000000] [--repeats 3]
        [--galleries /tmp/quickrun-galleries] [--model ViT-B-32] [--config-dir DIR] [--build-only]

A gallery of ``--items`` indexed rows with synthetic CLIP-shaped vectors (benchmarks.index's
``clip_like_vectors``, in the rows benchmarks.fresh_segment's ``add_rows`` makes, written with
one ``executemany``) and an Annoy index
published over them (as benchmarks.compaction does: ``index_build`` + ``index_activate``), plus
three saved searches, on SQLite with local files. Galleries are built once and kept in
``--galleries`` (a 1M gallery takes minutes to build); a run deletes what the previous run
added, so each starts from the same state.

Each repeat is a fresh process, as an Airflow task is: Django set up and the model loaded
first (not counted: the embed task loads it, and it is reported apart), then one real photo is
uploaded through the upload service and the tasks run in the DAG's order, calling what the
tasks call (dags/search_index.py): ``find_pending`` (``pending_chunks(new_only=True)``),
``embed`` (``images_embed_pending(ids=...)``), ``publish`` (``index_publish_new`` as a run
started by uploads), ``near_duplicates`` (``near_duplicates_find``) and
``saved_search_matches`` (``saved_searches_record_matches``). The index and fresh-segment
caches are emptied before each task, as each task runs in a process of its own. Per task: the
median time over the repeats, how much it raised the process's peak RSS (the largest rise over
the repeats), how much of that is pages of the memory-mapped index (RssFile: page cache shared
by every process that maps the index, not memory of the task's own), and the rest. The near-duplicate check runs its worst case: every neighbour the engine
proposes is read as a candidate (DUPLICATE_MIN_COSINE=-1; none can match, as the synthetic rows
have no hashes and DUPLICATE_COSINE_ALONE is out of reach).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.scratch_gallery import scratch_settings

TASKS = ["find_pending", "embed", "publish", "near_duplicates", "saved_search_matches"]
SAVED = ("a red bicycle", "a dog on a beach", "mountains at sunset")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--galleries", default="/tmp/quickrun-galleries")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--build-only", action="store_true", help="build (or keep) the galleries, measure nothing")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.items.split(",")]
    results = {}
    for items in sizes:
        folder = Path(args.galleries) / f"{items}-{args.model}"
        run_alone(build_gallery, str(folder), items, args.model, args.config_dir)
        if args.build_only:
            continue
        results[items] = [run_alone(one_run, str(folder), args.model, args.config_dir) for _ in range(args.repeats)]
    if args.build_only:
        return ""
    out = report(results, sizes, args)
    print(out)
    return out


def run_alone(fn, *args):
    """``fn(*args)`` in a process of its own (its peak memory is its own)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _django(folder: str, model: str, config_dir: str) -> None:
    os.environ.update(scratch_settings(folder, model=model, config_dir=config_dir))
    # The worst case of the near-duplicate check: every neighbour is a candidate, none matches.
    os.environ.update({"DUPLICATE_MIN_COSINE": "-1", "DUPLICATE_COSINE_ALONE": "1.01"})
    import django

    django.setup()


def build_gallery(folder: str, items: int, model: str, config_dir: str) -> None:
    ready = Path(folder) / "READY"
    Path(folder).mkdir(parents=True, exist_ok=True)
    _django(folder, model, config_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # a gallery kept from an older schema catches up
    if ready.exists():
        return
    from django.contrib.auth import get_user_model

    from benchmarks.index import clip_like_vectors
    from gallery.engine import embedder
    from gallery.indexing import EmbedReport, index_activate, index_build
    from gallery.models import Image
    from gallery.search import text_query
    from gallery.search.saved_searches import saved_search_create

    started = time.perf_counter()
    model = embedder.embedder()
    if not Image.objects.exists():
        for start in range(0, items, 100_000):
            count = min(100_000, items - start)
            insert_rows(clip_like_vectors(count, dim=model.dim, seed=start), model_id=model.model_id, start=start)
            print(f"{start + count:,} rows", file=sys.stderr)
    version = index_activate(index_build(model.model_id), embed_report=EmbedReport())
    assert version is not None and version.item_count == items, version
    member = get_user_model().objects.create_user("member", password="benchmark-member")
    for text in SAVED:
        saved_search_create(user=member, query=text_query(text))
    # The first process on a host to load a copy of the index checks its files (seconds at 1M);
    # later ones trust it (gallery.engine.index_cache). Done here, so the runs measure every later upload.
    from gallery.engine.index_cache import current_index

    assert len(current_index()) == items
    ready.write_text(str(Image.objects.order_by("-pk").values_list("pk", flat=True).first()))
    print(f"gallery of {items:,} built in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def insert_rows(vectors, *, model_id: str, start: int) -> None:
    """The rows ``benchmarks.fresh_segment.add_rows`` makes (indexed), written with one
    ``executemany``: Django's ``bulk_create`` on SQLite sends ~50 rows per statement, which
    took 30 minutes for a million rows on this shared machine."""
    from django.db import connection, transaction
    from django.utils import timezone

    from gallery.models import Image

    # Every concrete column gets a value (one this script does not know: the field's default).
    fields = list(Image._meta.concrete_fields)
    names = [field.column for field in fields if field.column != "id"]
    defaults = {field.column: field.get_db_prep_save(field.get_default(), connection) for field in fields}
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = []
    for n, vector in enumerate(vectors):
        values = defaults | {
            "file": f"originals/{start + n}.jpg", "thumbnail": f"thumbnails/{start + n}.jpg", "sha256": f"{start + n:064x}",
            "title": f"Photo {start + n}", "description": "", "width": 640, "height": 480, "size_bytes": 1,
            "uploaded_at": now, "taken_at": now, "taken_at_source": "upload", "status": "indexed", "error": "",
            "embedding": vector.tobytes(), "embedding_model": model_id, "embedded_at": now, "hidden": False, "tag_names": "",
        }
        rows.append([values[name] for name in names])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO gallery_image ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})", rows
        )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _file_mb() -> float:
    """Resident pages mapped from files: the memory-mapped index, shared with every process
    that maps it (page cache), not memory of this process's own."""
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_run(folder: str, model: str, config_dir: str) -> dict:
    _django(folder, model, config_dir)
    from gallery import indexing
    from gallery.catalogue.samples import available_samples
    from gallery.catalogue.uploads import image_create
    from gallery.engine import embedder
    from gallery.engine.fresh_segment import clear_fresh_cache
    from gallery.engine.index_cache import clear_index_cache
    from gallery.indexing.duplicates import near_duplicates_find
    from gallery.models import DuplicateGroup, Image, SavedSearchMatch
    from gallery.search.saved_searches import saved_searches_record_matches

    last = int((Path(folder) / "READY").read_text())
    for image in Image.objects.filter(pk__gt=last):  # what earlier runs added (files too)
        image.delete()
    SavedSearchMatch.objects.all().delete()
    DuplicateGroup.objects.all().delete()

    started = time.perf_counter()
    embedder.embedder()
    model_load = time.perf_counter() - started
    baseline = _peak_mb()
    sample = available_samples()[0]
    image_create(file=open(sample.path, "rb"), filename=Path(sample.path).name)

    state: dict = {}
    steps = {
        "find_pending": lambda: state.update(chunks=indexing.pending_chunks(chunk_size=1000, new_only=True)),
        "embed": lambda: state.update(
            report=indexing.EmbedReport.total([indexing.images_embed_pending(ids=ids).as_dict() for ids in state["chunks"]])
        ),
        "publish": lambda: indexing.index_publish_new(scheduled=False, embed_report=state["report"]),
        "near_duplicates": lambda: near_duplicates_find(image_ids=state["report"].ids),
        "saved_search_matches": lambda: saved_searches_record_matches(
            image_ids=state["report"].ids, model_id=state["report"].model_id
        ),
    }
    seconds, rises, mapped = {}, {}, {}
    for name in TASKS:
        clear_index_cache()  # each task is a process of its own under Airflow
        clear_fresh_cache()
        before, file_before = _peak_mb(), _file_mb()
        began = time.perf_counter()
        steps[name]()
        seconds[name] = time.perf_counter() - began
        rises[name] = _peak_mb() - before
        mapped[name] = _file_mb() - file_before
    assert state["report"].embedded == 1, state["report"]
    from django.db import connection

    return {
        "seconds": seconds, "rises": rises, "mapped": mapped, "model_load": model_load, "baseline_mb": baseline,
        "peak_mb": _peak_mb(), "dim": embedder.embedder().dim, "vendor": connection.vendor,
        "matches": SavedSearchMatch.objects.count(),
    }


def report(results: dict, sizes: list[int], args) -> str:
    from benchmarks.report import machine, table

    first = sizes[0]
    median = {items: {t: statistics.median(run["seconds"][t] for run in runs) for t in TASKS} for items, runs in results.items()}
    rise = {items: {t: max(run["rises"][t] for run in runs) for t in TASKS} for items, runs in results.items()}
    mapped = {items: {t: max(run["mapped"][t] for run in runs) for t in TASKS} for items, runs in results.items()}
    rows = []
    for items in sizes:
        for task in TASKS:
            rows.append([f"{items:,}", task, median[items][task] * 1000,
                         median[first][task] and median[items][task] / median[first][task],
                         rise[items][task], mapped[items][task], max(rise[items][task] - mapped[items][task], 0.0)])
        others = [t for t in TASKS if t != "embed"]
        added = sum(median[items][t] for t in others)
        rows.append([f"{items:,}", "**quick run beyond embed**", added * 1000,
                     added / sum(median[first][t] for t in others), max(rise[items][t] for t in others),
                     max(mapped[items][t] for t in others),
                     max(max(rise[items][t] - mapped[items][t], 0.0) for t in others)])
    runs = results[first]
    lines = [
        f"One upload's quick run ({args.repeats} runs per size, each a fresh process; SQLite, local files, "
        f"{args.model} with random weights, {runs[0]['dim']}-d; {len(SAVED)} saved searches; "
        f"near-duplicates in their worst case, every proposed neighbour read)",
        f"CPU: {machine()}",
        f"Model load (before the tasks, not counted): {statistics.median(r['model_load'] for r in runs):.1f} s; "
        f"process peak RSS with the model loaded: {statistics.median(r['baseline_mb'] for r in runs):.0f} MB",
        "",
        table(["images", "task", "median ms", "x of 10k" if first == 10_000 else f"x of {first:,}", "peak RSS rise MB",
               "of it mapped index MB", "own memory MB"], rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Smoke tests: each benchmark runs at a tiny size, so the scripts keep working. No timings
are asserted here; the figures live in docs/performance.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = str(ROOT / "tests" / "clip_configs")


def test_embedding_benchmark():
    from benchmarks import embedding

    out = embedding.main(["--model", "tiny-test", "--config-dir", CONFIGS, "--images", "4", "--batch-sizes", "2", "--workers", "1,2"])
    assert "pipeline / raw" in out and out.count("\n| 2 ") == 2


def test_index_benchmark(tmp_path):
    from benchmarks import index

    out, points = index.main(["--sizes", "500", "--trees", "2,4", "--search-k", "0,200", "--queries", "10", "--dim", "16",
                              "--plot", str(tmp_path / "plot.svg")])
    assert "recall@10" in out and "exact (numpy)" in out and len(points) == 4
    recall = {(p["trees"], p["search_k"]): p["recall"] for p in points}
    # Annoy's default looks at k * n_trees = 20 and 40 nodes; 200 looks at a superset: never fewer found.
    assert all(recall[(trees, 200)] >= recall[(trees, "default")] for trees in (2, 4)), recall
    assert (tmp_path / "plot.svg").stat().st_size > 1000


def test_relevance_harness(monkeypatch):
    from benchmarks import relevance

    monkeypatch.setenv("CLIP_MODEL", "tiny-test")
    monkeypatch.setenv("CLIP_PRETRAINED", "random")
    out = relevance.main(["--config-dir", CONFIGS])
    assert "text->image R@1" in out and "image->image P@3" in out


def free_port() -> int:
    """A port nobody listens on now: two suites may run side by side on one machine."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_http_benchmark():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.http_search", "--items", "300", "--requests", "4", "--concurrency", "2",
         "--model", "tiny-test", "--config-dir", CONFIGS, "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "search by uploaded image" in done.stdout
    # the floor is the server's own encoding of each new query (its Server-Timing header)
    assert re.search(r"Text-encoder floor \(the server's own encoding[^)]*\): p50 (?!0\.0 ms)[0-9.]+ ms", done.stdout)


def test_runtimes_benchmark(tiny_onnx_export):
    from benchmarks import runtimes

    folder, _ = tiny_onnx_export  # the export step itself is tested in test_onnx.py
    out = runtimes.main(["--model", "tiny-test", "--config-dir", CONFIGS, "--rounds", "1", "--export-dir", str(folder)])
    assert "| onnx-int8 " in out and "min cosine to torch" in out and "| text  | static " in out
    assert "CLIP_RUNTIME=auto (its own measurement of 3 rounds) picks " in out and "CPU: " in out


def test_fresh_segment_benchmark():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fresh_segment", "--items", "300", "--fresh", "0,20", "--queries", "3",
         "--model", "tiny-test", "--config-dir", CONFIGS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| 20 " in done.stdout and "Text-encoder floor" in done.stdout


def test_compaction_benchmark():
    from benchmarks import compaction

    out = compaction.main(["--items", "300", "--fresh", "20", "--model", "tiny-test", "--config-dir", CONFIGS])
    assert "| 320 " in out and "compaction s" in out


def test_scale_benchmark(tmp_path):
    """A tiny gallery, built, cached and measured through gunicorn: every request of the table
    answers as expected (the script checks each status code). One size keeps it short."""
    # The benchmark's galleries keep their files on local disk (it fetches /media/ paths).
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")} | {"PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-m", "benchmarks.scale", "--sizes", "150", "--requests", "1", "--model", "tiny-test",
               "--config-dir", CONFIGS, "--port", str(free_port()), "--cache-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| a missing media path (404)" in done.stdout and "| saved-search page `/saved/`" in done.stdout
    # The encoder's time comes from the server's Server-Timing header, so it is never 0 there.
    assert re.search(r"API search, new text: [0-9.]+ ms beyond its encoding \((?!0\.0 ms)[0-9.]+ ms; of the rest, index query [0-9.]+ ms, database [0-9.]+ ms\) at 150", done.stdout)
    assert "CPU: " in done.stdout and sorted(path.name for path in tmp_path.iterdir()) == ["sqlite-tiny-test-150", "static"]
    # Whether the server's index was in 2 MB pages: its files are mapped once a search loads them.
    mapped = re.search(r"The index's files as the server mapped them at the end [^:]*: ([0-9.,]+) MB, ([0-9.,]+) MB of it in 2 MB pages at 150\.", done.stdout)
    assert mapped and float(mapped[1]) > 0, done.stdout[-2000:]
    # How much of its database the page cache held before its server started: the file was just read.
    cached = re.search(r"The gallery's database in the page cache before its server started [^:]*: ([0-9.,]+) of ([0-9.,]+) MB at 150\.", done.stdout)
    assert cached and 0 < float(cached[1].replace(",", "")) <= float(cached[2].replace(",", "")), done.stdout[-2000:]


def test_search_cost_benchmark(tmp_path):
    """On a tiny gallery (benchmarks/scale.py's): every part of a search gets a time, and the
    whole request takes longer than search() inside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")} | {"PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    common = ["--model", "tiny-test", "--config-dir", CONFIGS, "--cache-dir", str(tmp_path)]
    built = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--prepare", "--sizes", "150", *common],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    done = subprocess.run([sys.executable, "-m", "benchmarks.search_cost", "--sizes", "150", "--requests", "10", *common],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in done.stdout.splitlines()
            if line.startswith("| ") and " ms " not in line and not line.startswith("| ---")}
    assert len(rows) == 14 and all(ms > 0 for ms in rows.values()), rows
    assert rows["the request (Django's test client)"] > rows["search() in all"] > rows["the index query (Annoy)"]
    assert "CPU: " in done.stdout
    # After the encoder: each text encoded first, its time taken out of the request's.
    done = subprocess.run([sys.executable, "-m", "benchmarks.search_cost", "--sizes", "150", "--requests", "10", "--after-encoding", *common],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in done.stdout.splitlines()
            if line.startswith("| ") and " ms " not in line and not line.startswith("| ---")}
    assert rows["the request beyond its encoding (Django's test client)"] > rows["search() in all"] > 0, rows
    assert "the encoder run on its text first" in done.stdout
    # The search page: its own parts beside search's; render() holds the status line and the templates.
    done = subprocess.run([sys.executable, "-m", "benchmarks.search_cost", "--sizes", "150", "--requests", "10", "--page", *common],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in done.stdout.splitlines()
            if line.startswith("| ") and " ms " not in line and not line.startswith("| ---")}
    assert "writing the page's 16 hits" not in rows and all(ms > 0 for ms in rows.values()), rows
    assert rows["the request (Django's test client)"] > rows["render() in all: context processors, templates"] > rows["the status line"], rows
    assert rows["the facets"] > 0 and "requests of the search page" in done.stdout


def test_resident_mb_tells_a_file_dropped_from_the_page_cache_from_one_read_just_now(tmp_path):
    """``benchmarks.report.resident_mb``: none of a file whose pages were dropped, all of it once
    read; one not ours and not writable to us is not known."""
    from benchmarks.report import resident_mb

    if subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout.strip() == "tmpfs":
        pytest.skip("tmpfs keeps its pages: there is no page cache to leave")
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(3 * 2**20))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())  # clean pages can be dropped
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert resident_mb([path]) == (0.0, 3.0)
    path.read_bytes()
    assert resident_mb([path]) == (3.0, 3.0)
    if os.geteuid() != 0:  # root may read and write anything: mincore answers it truly
        assert resident_mb([Path("/etc/hostname")]) is None


def test_filtered_search_benchmark(tmp_path):
    """A tiny gallery (benchmarks/scale.py's), tagged for the four shares and searched with
    and without each filter: the table has a row per share, and the exact way finds the truth."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")} | {"PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-m", "benchmarks.filtered_search", "--sizes", "300", "--queries", "3", "--model", "tiny-test",
               "--config-dir", CONFIGS, "--cache-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]] for line in done.stdout.splitlines()
            if line.startswith("| ") and "%" in line.split("|")[1]}
    assert list(rows) == ["100%", "10%", "1%", "0.1%"]
    assert all(cells[2] == "exact" and cells[3] == "1" for label, cells in rows.items() if label != "0.1%"), rows
    assert "CPU: " in done.stdout


def test_reduced_dims_benchmark():
    """Annoy over fewer dimensions, re-ranked: at a tiny size every configuration finds most of
    the true top 10 with enough nodes, and the whole index finds all of them once every item
    is a candidate."""
    from benchmarks import reduced_dims

    out = reduced_dims.main(["--items", "3000", "--dims", "32,8", "--nodes", "100,20000", "--queries", "20", "--trees", "5", "--dim", "32"])
    assert "CPU: " in out and "32 (the whole vectors)" in out and "8 principal components, re-ranked" in out
    cells = [line.split("|")[1:4] for line in out.splitlines() if re.match(r"\| \d+ .*\| \d+ ", line)]
    recall = {(index.strip(), int(nodes)): float(found) for index, nodes, found in cells}
    assert len(recall) == 4
    assert recall[("32 (the whole vectors)", 20000)] >= recall[("32 (the whole vectors)", 100)], recall
    assert recall[("8 principal components, re-ranked", 20000)] > 0.5, recall
    # 20,000 nodes: more than the 5 trees' 15,000 leaf entries, so every item is a candidate.
    assert recall[("32 (the whole vectors)", 20000)] == 1.0

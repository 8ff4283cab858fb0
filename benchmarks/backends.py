"""Annoy vs Milvus behind indexer.backends: build, cold open, query latency (with and without
the ``visible`` filter), recall@10 against exact search, memory and disk, on the same vectors.

    scripts/milvus-server start      # a real Milvus 2.3.5 server on 127.0.0.1:19540
    MILVUS_URI=http://127.0.0.1:19540 .venv/bin/python -m benchmarks.backends [--sizes 100000,1000000]
        [--backends annoy,milvus] [--queries 200] [--milvus-queries 100] [--workdir /var/tmp/bench]
    scripts/milvus-server stop

Without ``MILVUS_URI`` (or with a ``*.db`` path) Milvus is Milvus Lite in the build process.
On a server, the server's memory is reported too (its VmRSS after the build and after the
queries, read from /proc: the server must run on this machine, as scripts/milvus-server's does).

The vectors are benchmarks.index's CLIP-like 512-d unit vectors (clusters in a space whose
variance decays with the dimension, L2-normalised); queries are held-out points of the same
distribution. Each step runs in a fresh (spawned) process, so its peak RSS is its own: *build*
publishes and activates a version (for Milvus Lite, until its background indexing is done);
*serve* opens it cold in a new process and runs the queries. Milvus is measured as the gallery
uses it: HNSW over COSINE with ``ef = max(ef, k)`` and the ``visible == true`` filter on.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.index import DIM, clip_like_vectors, exact_top10
from benchmarks.report import machine, percentile_ms, table

MODEL = "bench/random"
VERSION = "20260101T000000Z-bench0"


def cpu() -> str:
    """The CPU model, cores, the SIMD flags that matter for these engines, and the load."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
    have = ", ".join(flag for flag in wanted if flag in flags) or "none of avx2/avx512"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, flags: {have}; load average {load}"


def make_backend(name: str, folder: Path, args):
    from indexer.backends import get_backend

    if name == "annoy":
        return get_backend("annoy", root=folder / "annoy", n_trees=args.trees, search_k=args.search_k, verify=False)
    return get_backend(
        "milvus", uri=milvus_uri(folder), prefix="bench", consistency_level=args.consistency,
        index_params={"M": args.m, "efConstruction": args.ef_construction}, search_params={"ef": args.ef},
        timeout=3600,
    )


def milvus_uri(folder: Path) -> str:
    return os.environ.get("MILVUS_URI") or str(folder / "milvus.db")


def on_server() -> bool:
    return os.environ.get("MILVUS_URI", "").startswith(("http://", "https://"))


def server_rss_mb() -> float | str:
    """The Milvus server's resident memory now (scripts/milvus-server's process), or '-'."""
    folder = Path(os.environ.get("MILVUS_SERVER_DIR", "/tmp/gallery-milvus"))
    try:
        launcher = (folder / "server.pid").read_text().strip()
        child = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()[0]
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, IndexError):
        pass
    return "-"


def drop_bench_collections(folder: Path) -> None:
    from indexer.backends import get_backend

    backend = get_backend("milvus", uri=milvus_uri(folder), prefix="bench", timeout=600)
    backend.drop_all()
    backend.close()


def wait_for_lite_indexing(backend) -> None:
    """Milvus Lite indexes new segments on a background thread and its describe_index does
    not report progress; a Milvus server does (the backend waits on it). Here, in-process,
    drain Lite's queue so 'build' includes the indexing."""
    from milvus_lite.server_manager import server_manager_instance

    _, db, _ = server_manager_instance._servers[os.path.abspath(backend.uri)]
    collection = db.get_collection(backend.collection(VERSION))
    while True:
        collection._wait_for_bg()
        if collection._ensure_loaded_segments_indexed() == 0:
            return


def build(name: str, folder: str, vectors_path: str, args, result) -> None:
    folder = Path(folder)
    vectors = np.load(vectors_path, mmap_mode="r")
    backend = make_backend(name, folder, args)
    started = time.perf_counter()
    batches = ((np.arange(s, min(s + 50_000, len(vectors))), np.asarray(vectors[s : s + 50_000]), None)
               for s in range(0, len(vectors), 50_000))
    backend.publish_batches(batches, model_id=MODEL, version=VERSION)
    result["publish_s"] = time.perf_counter() - started
    backend.activate(VERSION)
    if name == "milvus" and not on_server():
        wait_for_lite_indexing(backend)
    result["build_s"] = time.perf_counter() - started
    result["build_peak_mb"] = peak_rss_mb()
    if name == "milvus" and on_server():
        result["server_built_mb"] = server_rss_mb()
    backend.close()


def serve(name: str, folder: str, queries_path: str, truth_path: str, n_queries: int, args, result) -> None:
    folder = Path(folder)
    queries = np.load(queries_path)[:n_queries]
    truth = np.load(truth_path)[:n_queries]
    __import__("annoy" if name == "annoy" else "pymilvus")  # a serving process has its imports done
    started = time.perf_counter()
    backend = make_backend(name, folder, args)
    reader = backend.open()
    reader.query(queries[0], 10)
    result["open_s"] = time.perf_counter() - started
    for filtered in (True, False):  # the gallery's search (visible == true), and none
        latencies, recalls = [], []
        for query, expected in zip(queries, truth):
            began = time.perf_counter()
            found = reader.query(query, 10, only_visible=filtered)
            latencies.append(time.perf_counter() - began)
            recalls.append(len(set(expected.tolist()) & {pk for pk, _ in found}) / 10)
        suffix = "" if filtered else "_nofilter"
        result["p50_ms" + suffix] = percentile_ms(latencies, 50)
        result["p99_ms" + suffix] = percentile_ms(latencies, 99)
        result["recall" + suffix] = float(np.mean(recalls))
    result["serve_peak_mb"] = peak_rss_mb()
    if name == "milvus" and on_server():
        result["server_served_mb"] = server_rss_mb()
    backend.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent through fork and exec, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")  # a clean process: its RSS is its own
    with context.Manager() as manager:
        result = manager.dict()
        child = context.Process(target=target, args=(*args, result))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"{target.__name__} failed (exit code {child.exitcode})")
        return dict(result)


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--backends", default="annoy,milvus")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus-queries", type=int, default=100, help="Milvus Lite's search is slow at 1M: fewer")
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--search-k", type=int, default=20_000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef", type=int, default=128)
    # The gallery's default. "Strong" makes a server wait for its next time tick (~200 ms) on
    # every search: measured 378 ms p50 at 100k against Bounded's below.
    parser.add_argument("--consistency", default="Bounded", help="Milvus consistency level of the searches")
    parser.add_argument("--workdir", default="", help="a folder with room for the indexes (default: a temp folder)")
    parser.add_argument("--json", default="", help="also write the rows here")
    args = parser.parse_args(argv)
    header = f"{machine()}; {cpu()}; started {time.strftime('%Y-%m-%d %H:%M')}"
    print(header, flush=True)
    rows = []
    base = Path(args.workdir or os.environ.get("TMPDIR", "/tmp")) / f"backends-bench-{os.getpid()}"
    try:
        for size in map(int, args.sizes.split(",")):
            folder = base / str(size)
            folder.mkdir(parents=True, exist_ok=True)
            vectors = clip_like_vectors(size, dim=args.dim)
            queries = clip_like_vectors(args.queries, dim=args.dim, seed=1)
            np.save(folder / "vectors.npy", vectors)
            np.save(folder / "queries.npy", queries)
            np.save(folder / "truth.npy", exact_top10(vectors, queries))
            exact_ms = []
            for query in queries[:50]:
                started = time.perf_counter()
                np.argpartition(-(vectors @ query), 10)[:10]
                exact_ms.append(time.perf_counter() - started)
            del vectors
            for name in args.backends.split(","):
                built = in_child(build, name, str(folder), str(folder / "vectors.npy"), args)
                n_queries = args.queries if name == "annoy" else min(args.queries, args.milvus_queries)
                served = in_child(serve, name, str(folder), str(folder / "queries.npy"), str(folder / "truth.npy"), n_queries, args)
                store = folder / ("annoy" if name == "annoy" else "milvus.db")
                engine = "milvus 2.3.5 server" if on_server() else "milvus lite"
                label = f"annoy ({args.trees} trees, search_k {args.search_k})" if name == "annoy" else (
                    f"{engine} (HNSW M {args.m}, efC {args.ef_construction}, ef {args.ef})")
                disk = disk_mb(store) if store.exists() else "-"
                row = {"size": size, "backend": label, "queries": n_queries, **built, **served, "disk_mb": disk}
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(store, ignore_errors=True)
                if name == "milvus" and on_server():
                    drop_bench_collections(folder)
            rows.append({"size": size, "backend": "exact (numpy, in memory)", "queries": 50,
                         "p50_ms": percentile_ms(exact_ms, 50), "p99_ms": percentile_ms(exact_ms, 99), "recall": 1.0,
                         "p50_ms_nofilter": "-", "p99_ms_nofilter": "-", "recall_nofilter": "-"})
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = "\n".join([
        f"{args.dim}-d CLIP-like unit vectors; {header}; finished {time.strftime('%H:%M')}",
        "",
        table(
            ["vectors", "backend", "publish s", "build s", "build peak MB", "cold open s", "queries", "p50 ms", "p99 ms",
             "recall@10", "p50 ms no filter", "p99 ms no filter", "recall@10 no filter", "client peak MB",
             "server MB built", "server MB served", "disk MB"],
            [[r["size"], r["backend"], r.get("publish_s", "-"), r.get("build_s", "-"), r.get("build_peak_mb", "-"),
              r.get("open_s", "-"), r["queries"], r["p50_ms"], r["p99_ms"], r["recall"], r["p50_ms_nofilter"],
              r["p99_ms_nofilter"], r["recall_nofilter"], r.get("serve_peak_mb", "-"), r.get("server_built_mb", "-"),
              r.get("server_served_mb", "-"), r.get("disk_mb", "-")] for r in rows],
        ),
    ])
    print(out)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return out


if __name__ == "__main__":
    main()

"""The slim web tier (scripts/install --web) against the full install: installed size, and the
cold start of the serverless handler (process start to first search answered).

    VENV=/tmp/slim scripts/install --web; VENV=/tmp/full scripts/install
    .venv/bin/python -m benchmarks.web_tier --slim-venv /tmp/slim --full-venv /tmp/full --export-dir DIR

DIR holds an ONNX export of the model (``python -m benchmarks.runtimes --export-dir DIR``); it is
published into a local storage folder with an index of ``--items`` synthetic rows, and each probe
is a fresh process with an empty cache (a new function instance): Django starts, the model and
the index are copied from storage and loaded, the search is answered through
``webapp.lambda_handler``. Runs alternate between the tiers. The CPU time the process used until
its first answer is reported too: it is what a busy machine inflates least.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.cold_start import PROBE
from benchmarks.report import table

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "open_clip")


def installed_mb(venv: Path) -> float:
    done = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[0])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slim-venv", type=Path, required=True)
    parser.add_argument("--full-venv", type=Path, required=True)
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    from indexer.runtime_choice import cpu_description, cpu_line

    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DJANGO_SECRET_KEY": "benchmark",
            "DATABASE_URL": f"sqlite:///{var}/db.sqlite3", "DJANGO_MEDIA_ROOT": str(var / "media"),
            "CLIP_MODEL": args.model, "CLIP_PRETRAINED": "random", "CLIP_MODEL_CONFIG_DIR": args.config_dir,
            "CLIP_RUNTIME": "onnx", "GALLERY_LOG_LEVEL": "WARNING", "DJANGO_ALLOWED_HOSTS": "localhost",
            "GALLERY_VAR_DIR": str(var / "setup"), "PYTHONPATH": str(ROOT),
        }
        os.environ.update(env)
        import django

        django.setup()
        from gallery.engine import embedder
        from gallery.engine.artifacts import store_artifact
        from gallery.engine.onnx_models import storage_prefix
        from indexer.embedding.onnx_backend import read_manifest
        from indexer.onnx_export import manifest_files

        store_artifact(args.export_dir, storage_prefix(embedder.model_spec()), manifest_files(read_manifest(args.export_dir)))
        from benchmarks.http_search import setup_database

        setup_database(var, args.items)  # vectors of the onnx runtime: every runtime may search them
        tiers = [
            ("full (today)", args.full_venv, "torch"),
            ("full", args.full_venv, "onnx-int8"),
            ("slim --web", args.slim_venv, "onnx"),
            ("slim --web", args.slim_venv, "onnx-int8"),
        ]
        results = {key: [] for key in tiers}
        for run in range(args.runs):
            for key in tiers:
                name, venv, runtime = key
                cache = var / f"fresh-{run}-{len(results[key])}-{runtime}-{venv.name}"
                probe = PROBE.replace("searched = time.perf_counter()", "searched = time.perf_counter(); cpu = resource.getrusage(resource.RUSAGE_SELF)")
                probe = "import resource\n" + probe + (
                    "\nimport sys; print(json.dumps({'heavy': sorted({m.split('.')[0] for m in sys.modules} & set(%r)),"
                    " 'cpu': cpu.ru_utime + cpu.ru_stime}))" % (HEAVY,)
                )
                done = subprocess.run(
                    [str(venv / "bin" / "python"), "-c", probe], cwd=ROOT, capture_output=True, text=True,
                    env={**env, "CLIP_RUNTIME": runtime, "GALLERY_VAR_DIR": str(cache), "INDEX_CACHE_DIR": str(cache / "index-cache")},
                )
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                lines = done.stdout.strip().splitlines()
                times, extra = json.loads(lines[-2]), json.loads(lines[-1])
                times["cpu"], heavy = extra["cpu"], extra["heavy"]
                results[key].append((times, heavy))
                shutil.rmtree(cache, ignore_errors=True)
    rows = []
    for (name, venv, runtime), runs in results.items():
        med = lambda field: statistics.median(t[field] for t, _ in runs) * 1000  # noqa: E731
        rows.append([
            name, runtime, installed_mb(venv), med("import"), med("first"), med("import") + med("first"), med("cpu"), med("second"),
            ", ".join(runs[0][1]) or "none",
        ])
    out = "\n".join([
        f"Web tier cold start, {args.model}, index of {args.items:,} images in local storage, medians of {args.runs} runs: "
        f"CPU {cpu_line(cpu_description())}",
        "",
        table(["install", "runtime", "installed MB", "import + Django ms", "first search ms", "cold total ms",
               "CPU ms to first answer", "warm search ms", "torch-side modules loaded"], rows),
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()

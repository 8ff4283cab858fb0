"""Freshness: from upload to searchable, with the whole `make run` set-up running (gunicorn beside
Airflow's API server, scheduler and dag-processor on the embedded defaults), nothing else.

    .venv/bin/python -m benchmarks.freshness [--uploads 20] [--interval 9] [--burst 50] [--compact-during]

Starts `scripts/run` on a fresh var/ folder (free ports; the model of `make run`: ViT-B-32, with
random weights when no real ones are configured, which cost what real ones cost) and measures:

- start-up: from `scripts/run` to both the gallery and Airflow answering, on a fresh folder
  (sample photos imported and embedded first) and again on the same folder;
- memory: RSS and PSS (shared pages counted once) of every process of every part, idle, and
  the peak while indexing;
- upload -> embedded (the row has its vector) and upload -> indexed (in the published index):
  `--uploads` photos through the REST API, one every `--interval` seconds (jittered), p50/p95;
  with `--compact-during`, a compaction is started once the first upload is embedded (a manual
  run of the indexing DAG asks for one; that upload makes it rebuild the whole index), and the
  uploads posted while one ran are reported apart;
- a burst: `--burst` photos posted as fast as one client can, the asset events and DAG runs it
  caused, and the time until all were indexed;
- Ctrl-C: from SIGINT to every process gone.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from indexer.dag_names import COMPACT_DAG_ID, INDEX_DAG_ID

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--interval", type=float, default=9.0, help="mean seconds between two uploads")
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--model", default="", help="CLIP_MODEL (default: as make run)")
    parser.add_argument("--config-dir", default="", help="CLIP_MODEL_CONFIG_DIR, for a test model")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the last upload's vector")
    parser.add_argument("--indexed-grace", type=float, default=120,
                        help="seconds to wait after that for uploads to be in a published index")
    parser.add_argument("--keep", action="store_true", help="keep the var/ folder (its logs)")
    parser.add_argument("--compact-during", action="store_true",
                        help="start a compaction (a manual run of the indexing DAG) once the first spread upload is embedded")
    parser.add_argument("--gallery", default="",
                        help="start from a copy of this gallery folder (a benchmarks.scale SQLite gallery, e.g. "
                             "/tmp/scale-galleries/sqlite-ViT-B-32-1000000, with --model ViT-B-32) instead of an empty one")
    args = parser.parse_args(argv)

    from benchmarks.report import table

    var = Path(tempfile.mkdtemp(prefix="freshness-"))
    if args.gallery:
        copy_gallery(Path(args.gallery), var)
    env = _env(var, args)
    memory = MemorySampler(var)
    on = f"a copy of {args.gallery} ({_image_count(var):,} images)" if args.gallery else "the embedded default (`make run`)"
    out = [f"Freshness on {on}: {cpu()}", f"load average at start: {os.getloadavg()[0]:.1f}", ""]
    try:
        # --- start-up, twice --------------------------------------------------------------------
        first, run = _start(env, var)
        run = _stop(run)[1]
        second, run = _start(env, var)
        memory.start(run)
        time.sleep(5)
        idle = memory.snapshot()
        gallery, airflow = f"http://{env['GALLERY_BIND']}", _airflow_login(var)
        django_setup(var)
        token = api_token()

        # --- spread uploads -------------------------------------------------------------------------
        rng = random.Random(0)
        memory.peak_reset()
        spread = []
        for n in range(args.uploads):
            spread.append(upload(gallery, token, photo(n)))
            if n == 0 and args.compact_during:
                # A compaction with something to publish (the first upload, once embedded),
                # so it rebuilds the whole index while the other uploads come in.
                wait_searchable(spread, args.timeout, indexed_grace=0)
                airflow.start_compaction()
            if n < args.uploads - 1:
                time.sleep(rng.uniform(0.5, 1.5) * args.interval)
        times = wait_searchable(spread, args.timeout, args.indexed_grace)
        compactions = airflow.compactions()

        # --- a burst ------------------------------------------------------------------------------
        before = airflow.counts()
        started = time.time()
        burst = [upload(gallery, token, photo(1000 + n)) for n in range(args.burst)]
        posted = time.time() - started
        burst_times = wait_searchable(burst, args.timeout, args.indexed_grace)
        all_embedded = max(t["embedded"] + t["sent"] for t in burst_times) - started
        airflow.wait_idle()  # the runs that events queued during the last one caused, too
        after = airflow.counts()
        peak = memory.peak

        # --- Ctrl-C -----------------------------------------------------------------------------------
        stop_seconds, run = _stop(run)
        left = [sid for sid in memory.sessions() if _session_alive(sid)]
        memory.stop()
    finally:
        if "run" in locals() and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for sid in memory.sessions():
            subprocess.run(["pkill", "-KILL", "-s", str(sid)], check=False)
        if not args.keep:
            shutil.rmtree(var, ignore_errors=True)

    embedded = [t["embedded"] for t in times]
    indexed = [t["indexed"] for t in times if "indexed" in t]
    out += [
        "Start-up (scripts/run until the gallery and Airflow both answer):",
        "",
        table(["start", "seconds"], [["first start on this var/ (migrations, sample photos embedded and the index "
                                      "published, Airflow's database)", first],
                                     ["again, same var/", second]]),
        "",
        "Memory of the whole set-up (every process of every part; PSS counts shared pages once):",
        "",
        table(["part", "processes", "RSS MB", "PSS MB"],
              [[name, idle[name]["processes"], idle[name]["rss"], idle[name]["pss"]] for name in sorted(idle)]
              + [["total, idle", sum(v["processes"] for v in idle.values()), sum(v["rss"] for v in idle.values()),
                  sum(v["pss"] for v in idle.values())],
                 ["total, peak while indexing", peak["processes"], peak["rss"], peak["pss"]]]),
        "",
        f"Upload to searchable: {args.uploads} uploads through the REST API, one every {args.interval:.0f} s "
        f"on average (x0.5-1.5):",
        "",
        table(["from upload to", "p50 s", "p95 s", "max s", "uploads"],
              [["embedded: searchable (the row has its vector)", *_stats(embedded, args.uploads)],
               [f"indexed: in a published index (within {args.indexed_grace:.0f} s more)", *_stats(indexed, args.uploads)]]),
        "",
        *_during_compactions(times, compactions),
        f"A burst of {args.burst} uploads, posted in {posted:.1f} s by one client:",
        "",
        table(["asset events", "DAG runs", "all embedded after s", "p50 upload->embedded s"],
              [[after["events"] - before["events"], after["runs"] - before["runs"], all_embedded,
                _stats([t["embedded"] for t in burst_times], args.burst)[0]]]),
        "",
        f"Ctrl-C (SIGINT to scripts/run) to every process gone: {stop_seconds:.1f} s; processes left: {len(left)}",
        f"load average at the end: {os.getloadavg()[0]:.1f}",
    ]
    text = "\n".join(out)
    print(text)
    return text


# --- the set-up ---------------------------------------------------------------------------------


def copy_gallery(source: Path, var: Path) -> None:
    """A gallery of its own for this run: the database copied (uploads change it); media and the
    index cache hard-linked (published index files never change, and new files get new names)."""
    if not (source / "db.sqlite3").exists():
        sys.exit(f"{source} holds no db.sqlite3: give a benchmarks.scale SQLite gallery folder")
    for name in ("media", "index-cache"):
        if (source / name).exists():
            subprocess.run(["cp", "-al", str(source / name), str(var / name)], check=True)
    shutil.copy2(source / "db.sqlite3", var / "db.sqlite3")


def _image_count(var: Path) -> int:
    import sqlite3

    with sqlite3.connect(var / "db.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM gallery_image").fetchone()[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(var: Path, args) -> dict:
    drop = ("AIRFLOW", "DATABASE_URL", "S3_", "DJANGO_", "GALLERY_", "INDEX_", "API_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({
        "GALLERY_VAR_DIR": str(var),
        "GALLERY_BIND": f"127.0.0.1:{_free_port()}",
        "AIRFLOW__API__PORT": str(_free_port()),
        "API_UPLOAD_RATE": "100000/min",  # one client posts the burst
        "PYTHONUNBUFFERED": "1",
    })
    if args.model:
        env.update({"CLIP_MODEL": args.model, "CLIP_PRETRAINED": "random", "CLIP_MODEL_CONFIG_DIR": args.config_dir})
    return env


def _start(env: dict, var: Path) -> tuple[float, subprocess.Popen]:
    log = var / f"run-{time.time():.0f}.log"
    started = time.monotonic()
    with open(log, "w") as out:
        # SIGINT back at its default first (a benchmark run in the background has it ignored, and
        # bash cannot trap a signal ignored on entry), then scripts/run in place of that Python.
        script = str(ROOT / "scripts" / "run")
        reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
        run = subprocess.Popen([sys.executable, "-c", reset, script], env=env, stdout=out, stderr=out,
                               start_new_session=True)
    while "Ready in" not in log.read_text():
        if run.poll() is not None or time.monotonic() - started > 1800:  # a 1M gallery's first start rebuilds its index
            sys.exit(f"scripts/run did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return time.monotonic() - started, run


def _stop(run: subprocess.Popen) -> tuple[float, subprocess.Popen]:
    """Ctrl-C as a terminal sends it; seconds until scripts/run has stopped everything."""
    started = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    run.wait(timeout=120)
    return time.monotonic() - started, run


def _session_alive(sid: int) -> bool:
    return subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, check=False).returncode == 0


class MemorySampler:
    """Sums RSS and PSS over the processes of the sessions var/run.pid names, once a second."""

    def __init__(self, var: Path):
        self.var = var
        self.peak = {"rss": 0, "pss": 0, "processes": 0}
        self._sids: dict[int, str] = {}
        self._stop = threading.Event()

    def start(self, run: subprocess.Popen) -> None:
        owner, *lines = (self.var / "run.pid").read_text().split("\n")
        assert owner == str(run.pid)
        self._sids = {int(sid): name for sid, name in (line.split() for line in lines if line.strip())}
        threading.Thread(target=self._loop, daemon=True).start()

    def sessions(self) -> list[int]:
        return list(self._sids)

    def snapshot(self) -> dict[str, dict]:
        from benchmarks.report import processes

        parts = {name: {"rss": 0.0, "pss": 0.0, "processes": 0} for name in self._sids.values()}
        for pid, stat in processes().items():
            sid = int(stat[3])
            if sid not in self._sids:
                continue
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue  # gone meanwhile
            kb = {m[0]: int(m[1]) for m in re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.M)}
            part = parts[self._sids[sid]]
            part["rss"] += kb.get("Rss", 0) / 1024
            part["pss"] += kb.get("Pss", 0) / 1024
            part["processes"] += 1
        return parts

    def peak_reset(self) -> None:
        self.peak = {"rss": 0, "pss": 0, "processes": 0}

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            parts = self.snapshot().values()
            total = {key: sum(p[key] for p in parts) for key in ("rss", "pss", "processes")}
            if total["pss"] > self.peak["pss"]:
                self.peak = total


class _Airflow:
    def __init__(self, url: str, username: str, password: str):
        self.url, self.username, self.password = url, username, password

    def _get(self, path: str, body: dict | None = None) -> dict:
        """GET `path`, or POST `body` to it."""
        login = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                       data=json.dumps({"username": self.username, "password": self.password}).encode())
        login.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(login, timeout=10) as reply:
            token = json.load(reply)["access_token"]
        request = urllib.request.Request(f"{self.url}{path}", data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)

    def wait_idle(self, timeout: float = 600) -> None:
        """Until no run of either DAG is queued or running and no asset event waits for one."""
        deadline, quiet = time.time() + timeout, 0
        while time.time() < deadline and quiet < 2:
            busy = 0
            for dag in (INDEX_DAG_ID, COMPACT_DAG_ID):
                busy += self._get(f"/api/v2/dags/{dag}/dagRuns?state=queued&state=running&limit=1")["total_entries"]
                busy += self._get(f"/api/v2/dags/{dag}/assets/queuedEvents")["total_entries"]
            quiet = quiet + 1 if busy == 0 else 0
            time.sleep(2)

    def start_compaction(self, timeout: float = 600) -> None:
        """A manual run of the indexing DAG, which asks for a compaction; returns once the
        compaction DAG's run it started is running."""
        before = self._get(f"/api/v2/dags/{COMPACT_DAG_ID}/dagRuns?limit=1")["total_entries"]
        self._get(f"/api/v2/dags/{INDEX_DAG_ID}/dagRuns", {"logical_date": None})
        deadline = time.time() + timeout
        while time.time() < deadline:
            runs = self._get(f"/api/v2/dags/{COMPACT_DAG_ID}/dagRuns?order_by=-id&limit=1")
            if runs["total_entries"] > before and runs["dag_runs"][0]["state"] == "running":
                return
            time.sleep(0.5)
        sys.exit(f"no compaction running {timeout:.0f} s after a manual run of {INDEX_DAG_ID}")

    def compactions(self) -> list[tuple[float, float]]:
        """(start, end) of the compaction DAG's runs, as Unix times (end: now while running)."""
        runs = self._get(f"/api/v2/dags/{COMPACT_DAG_ID}/dagRuns?order_by=-id&limit=50")["dag_runs"]
        stamp = lambda text: datetime.fromisoformat(text).timestamp() if text else time.time()  # noqa: E731
        return [(stamp(run["start_date"]), stamp(run["end_date"])) for run in runs if run["start_date"]]

    def counts(self) -> dict:
        return {"events": self._get("/api/v2/assets/events?limit=1")["total_entries"],
                "runs": self._get(f"/api/v2/dags/{INDEX_DAG_ID}/dagRuns?limit=1")["total_entries"]}


def _airflow_login(var: Path) -> _Airflow:
    """The Airflow API's address and login, as scripts/run printed them (the password only on
    the start that made it; it is kept in Airflow's passwords file)."""
    log = sorted(var.glob("run-*.log"))[-1].read_text()
    url, username = re.search(r"Airflow UI at (\S+) \(user ([^,;)\s]+)", log).groups()
    passwords = json.loads((var / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
    return _Airflow(url, username, passwords[username])


# --- the gallery ---------------------------------------------------------------------------------


def django_setup(var: Path) -> None:
    os.environ.update({"GALLERY_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "webapp.settings",
                       "DJANGO_SECRET_KEY": (var / "secret-key").read_text().strip()})
    import django

    django.setup()


def api_token() -> str:
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    user, _ = User.objects.get_or_create(username="freshness-benchmark")
    return Token.objects.get_or_create(user=user)[0].key


def photo(seed: int) -> bytes:
    """A distinct 1280x960 JPEG (about what a phone's resized photo weighs)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    colour = lambda: tuple(rng.randrange(256) for _ in range(3))  # noqa: E731
    image = Image.new("RGB", (1280, 960), colour())
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = rng.randrange(1280), rng.randrange(960)
        box = [x, y, x + rng.randrange(40, 400), y + rng.randrange(40, 300)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour())
    out = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(2)).save(out, format="JPEG", quality=88)
    return out.getvalue()


def upload(gallery: str, token: str, data: bytes) -> dict:
    import requests

    sent = time.time()
    reply = requests.post(f"{gallery}/api/v1/images/", headers={"Authorization": f"Token {token}"},
                          files={"file": (f"photo-{sent:.3f}.jpg", data, "image/jpeg")}, timeout=60)
    reply.raise_for_status()
    return {"id": reply.json()["id"], "sent": sent, "answered": time.time() - sent}


def wait_searchable(uploads: list[dict], timeout: float, indexed_grace: float) -> list[dict]:
    """Seconds from each upload's request to its vector (`embedded_at`: searchable from then on,
    through the fresh segment) and to the first poll (every 0.25 s) that sees it in a published
    index. Waits until every upload is embedded, then up to `indexed_grace` more seconds for the
    ones not yet indexed (a run that only embeds leaves the rebuild to a later one)."""
    from gallery.models import Image

    waiting = {u["id"]: dict(u) for u in uploads}
    deadline, embedded_by = time.time() + timeout, None
    while True:
        now = time.time()
        rows = Image.objects.filter(pk__in=[pk for pk, u in waiting.items() if "indexed" not in u])
        for pk, status, embedded_at in rows.values_list("pk", "status", "embedded_at"):
            u = waiting[pk]
            if status == Image.Status.FAILED:
                sys.exit(f"image {pk} failed")
            if embedded_at and "embedded" not in u:
                u["embedded"] = embedded_at.timestamp() - u["sent"]
            if status == Image.Status.INDEXED:
                u["indexed"] = now - u["sent"]
        if embedded_by is None and all("embedded" in u for u in waiting.values()):
            embedded_by = now
        if embedded_by is not None and (all("indexed" in u for u in waiting.values()) or now > embedded_by + indexed_grace):
            return list(waiting.values())
        if now > deadline:
            sys.exit(f"{sum('embedded' not in u for u in waiting.values())} uploads not embedded within {timeout:.0f} s")
        time.sleep(0.25)


def _during_compactions(times: list[dict], compactions: list[tuple[float, float]]) -> list[str]:
    """The spread uploads posted while a compaction ran, and how long those took to be searchable."""
    during = [t["embedded"] for t in times if any(start <= t["sent"] <= end for start, end in compactions)]
    spans = ", ".join(f"{end - start:.0f} s" for start, end in sorted(compactions) if end - start > 0)
    if not during:
        return [f"No upload was posted while a compaction ran (compactions: {spans or 'none'}).", ""]
    p50, p95, top, count = _stats(during, len(times))
    return [f"Posted while a compaction ran ({spans}): {count} uploads, upload -> embedded p50 {p50:.1f} s, "
            f"p95 {p95:.1f} s, max {top:.1f} s.", ""]


def _stats(values: list[float], of: int) -> list:
    from benchmarks.report import percentile_ms

    if not values:
        return ["-", "-", "-", f"0 of {of}"]
    return [percentile_ms(values, 50) / 1000, percentile_ms(values, 95) / 1000, max(values), f"{len(values)} of {of}"]


def cpu() -> str:
    import platform

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", info, re.M).group(1).split()) if "flags" in info else set()
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return (f"{model.group(1) if model else platform.machine()}, {os.cpu_count()} cores, flags {' '.join(wanted) or 'none'}; "
            f"Python {platform.python_version()}; {datetime.now(timezone.utc):%Y-%m-%d}")


if __name__ == "__main__":
    main()

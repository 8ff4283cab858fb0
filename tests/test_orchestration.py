"""Upload-triggered indexing, still orchestrated: every upload announces new images to Airflow (an
asset event through its REST API) and the DAG runs on it; and `scripts/run`, which starts the
gallery and Airflow together and stops them together.

With real processes: Airflow's API server, scheduler and dag-processor on a temporary home, the
DAG's tasks on this test's database; and `scripts/run` itself on a temporary var/ folder.
"""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from rest_framework.test import APIClient

from gallery.indexing import airflow_api
from gallery.indexing.airflow_api import announcements_flush
from gallery.models import Image, IndexVersion
from indexer.dag_names import COMPACT_DAG_ID, NEW_UPLOADS_ASSET_URI
from tests.conftest import CLIP_CONFIGS, as_upload, on_object_storage
from tests.images import image_bytes
from tests.searching import similar
from tests.test_dag import (
    AIRFLOW,
    ROOT,
    airflow_env,  # noqa: F401 (a fixture: an Airflow home of this module's own)
    airflow_get,
    airflow_token,
    dag_env,
)
from tests.test_security import FakeAirflow

pytestmark = pytest.mark.django_db(transaction=True)  # uploads announce after their commit


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def announcer_log():
    """announcer_log() -> the log records of gallery.indexing.airflow_api so far."""
    logger, handler = logging.getLogger("gallery.indexing.airflow_api"), Records()
    logger.addHandler(handler)
    yield lambda: list(handler.records)
    logger.removeHandler(handler)


class SilentServer:
    """Accepts connections and never answers: an Airflow that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.connections.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


def test_with_airflow_down_an_upload_is_stored_and_the_signal_dropped_with_one_log_line(settings, upload, announcer_log, monkeypatch):
    monkeypatch.setattr(airflow_api, "ANNOUNCE_PATIENCE", 2)  # tries again for 2 s, then gives up
    settings.AIRFLOW_API_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    image, created = upload(1)
    assert announcements_flush()
    assert created and Image.objects.get().pk == image.pk and image.status == "pending"
    assert default_storage.exists(image.file.name) and default_storage.exists(image.thumbnail.name)
    *retries, line = announcer_log()
    assert len(retries) == 2 and all(r.levelno == logging.INFO and "trying again" in r.getMessage() for r in retries)
    assert line.levelno == logging.WARNING
    assert "not announced to Airflow" in line.getMessage() and "unreachable" in line.getMessage()


def _airflow_that_starts_after(failures: int, status: int) -> FakeAirflow:
    """An Airflow API stub: ``status`` for its first ``failures`` requests, then token, asset and
    event answers as Airflow 3 gives them."""
    answered = []

    def answer(path):
        answered.append(path)
        reply = {"/auth/token": {"access_token": "a.e30.b"}, "/api/v2/assets/events": {"id": 11}}.get(path)
        if path.startswith("/api/v2/assets?"):
            reply = {"assets": [{"id": 3, "uri": NEW_UPLOADS_ASSET_URI}]}
        if len(answered) <= failures:
            return status, {}, b"not yet"
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    return FakeAirflow(answer)


def test_an_airflow_still_starting_gets_the_announcement_once_it_answers(settings, upload, announcer_log, monkeypatch):
    monkeypatch.setattr(airflow_api, "ANNOUNCE_PATIENCE", 10)
    airflow = _airflow_that_starts_after(2, 503)
    settings.AIRFLOW_API_URL = f"http://127.0.0.1:{airflow.port}"
    try:
        upload(1)
        assert announcements_flush()
    finally:
        airflow.close()
    events = [json.loads(body) for method, path, _, body in airflow.seen if path == "/api/v2/assets/events"]
    assert events == [{"asset_id": 3, "extra": {"source": "gallery"}}]
    lines = announcer_log()
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO] and all("503" in r.getMessage() for r in lines)


def test_an_airflow_that_refuses_the_login_is_not_asked_again(settings, upload, announcer_log, monkeypatch):
    monkeypatch.setattr(airflow_api, "ANNOUNCE_PATIENCE", 10)
    airflow = _airflow_that_starts_after(100, 403)
    settings.AIRFLOW_API_URL = f"http://127.0.0.1:{airflow.port}"
    try:
        upload(1)
        assert announcements_flush(timeout=5)
    finally:
        airflow.close()
    assert [path for _, path, *_ in airflow.seen] == ["/auth/token"]
    [line] = announcer_log()
    assert line.levelno == logging.WARNING and "403" in line.getMessage()


def test_a_hung_airflow_never_slows_an_upload_and_a_burst_shares_one_event(settings, upload, announcer_log, monkeypatch):
    monkeypatch.setattr(airflow_api, "ANNOUNCE_PATIENCE", 0)  # one try per event: what this test counts
    airflow = SilentServer()
    settings.AIRFLOW_API_URL = airflow.url
    try:
        upload(1)
        # The upload has returned while the announcement still waits on Airflow.
        assert not announcements_flush(timeout=0)
        _wait("the announcement reaches Airflow", lambda: airflow.connections, timeout=10)
        for seed in range(2, 7):
            upload(seed)
        assert announcements_flush(timeout=20)
        # One request for the first upload; the five that came while it hung share one more.
        assert len(airflow.connections) == 2
    finally:
        airflow.close()
    assert Image.objects.count() == 6 and set(Image.objects.values_list("status", flat=True)) == {"pending"}
    lines = announcer_log()
    assert len(lines) == 2 and all("timed out" in line.getMessage() for line in lines)


def test_without_airflow_configured_uploads_say_so_once(settings, upload, announcer_log, monkeypatch):
    settings.AIRFLOW_API_URL = ""
    monkeypatch.setattr(airflow_api, "_not_configured_logged", False)
    upload(1)
    upload(2)
    [line] = announcer_log()
    assert line.levelno == logging.INFO and "AIRFLOW_API_URL is not set" in line.getMessage()
    assert Image.objects.count() == 2


def test_a_rolled_back_upload_announces_nothing(settings, announcer_log, monkeypatch):
    monkeypatch.setattr(airflow_api, "ANNOUNCE_PATIENCE", 0)
    from django.db import transaction

    from gallery.catalogue.uploads import image_create

    airflow = SilentServer()
    settings.AIRFLOW_API_URL = airflow.url
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            image_create(file=as_upload(image_bytes(1)), filename="photo.jpg")
            raise RuntimeError("the caller's transaction fails after the upload")
        assert announcements_flush(timeout=0) and airflow.connections == []
    finally:
        airflow.close()
    assert not Image.objects.exists() and announcer_log() == []  # (its files are the caller's to clean)


# --- a real scheduler ---------------------------------------------------------------------------


def _kill_session(sid: int, sig: int) -> None:
    subprocess.run(["pkill", f"-{sig}", "-s", str(sid)], check=False)


def _session_alive(sid: int) -> bool:
    return subprocess.run(["pgrep", "-s", str(sid)], capture_output=True).returncode == 0


def _wait(what: str, check, *, timeout: float, logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    tails = "\n".join(f"--- {log}\n{Path(log).read_text()[-3000:]}" for log in logs if Path(log).exists())
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{tails}")


@pytest.fixture
def live_airflow(airflow_env, settings):  # noqa: F811 (the fixture imported above)
    """Airflow's API server, scheduler and dag-processor, as a deployment runs them, with the DAG's
    tasks on this test's database and media. Yields (url, username, token, logs)."""
    port = free_port()
    env = {
        **dag_env(airflow_env, settings),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "gallery:admin",
        # A schedule that never fires here (the last Feb 29 is before the DAG's start date), so
        # only the uploads' events start runs.
        "INDEX_DAG_SCHEDULE": "0 0 29 2 *",
        # Three uploads outgrow it: a run started by them asks the compaction DAG for a rebuild.
        "FRESH_SEGMENT_MAX": "2",
    }
    home = Path(env["AIRFLOW_HOME"])
    processes, logs = [], []
    for part in ("api-server", "scheduler", "dag-processor"):
        logs.append(home / f"{part}.log")
        with open(logs[-1], "w") as log:
            processes.append(subprocess.Popen([*AIRFLOW, part], env=env, stdout=log, stderr=log, start_new_session=True))
    url = f"http://127.0.0.1:{port}"
    try:

        def token():
            try:
                password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["gallery"]
                return airflow_token(url, "gallery", password), password
            except (OSError, ValueError, KeyError):
                assert all(p.poll() is None for p in processes), [log.read_text()[-2000:] for log in logs]
                return None

        jwt, password = _wait("Airflow's API server answers", token, timeout=120, logs=logs)
        # The dag-processor has parsed the DAG: its asset exists, its schedule is in the database.
        dag = _wait(
            "the DAG is parsed",
            lambda: (d := airflow_get(url, jwt, "/api/v2/dags?dag_id_pattern=search_index")["dags"]) and d[0],
            timeout=120,
            logs=logs,
        )
        settings.AIRFLOW_API_URL, settings.AIRFLOW_API_USERNAME, settings.AIRFLOW_API_PASSWORD = url, "gallery", password
        yield url, jwt, dag, logs
    finally:
        # A scheduler stopping gracefully waits for running tasks: not worth waiting for here.
        for process in processes:
            _kill_session(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_session_alive(p.pid) for p in processes):
            time.sleep(0.2)
        for process in processes:
            _kill_session(process.pid, signal.SIGKILL)  # task processes too
            process.wait()


def embedded_default_pass() -> bool:
    return connection.vendor == "sqlite" and not on_object_storage()


def test_a_real_scheduler_indexes_uploads_without_anyone_running_a_command(admin_user, request):
    # One whole Airflow per pass is enough on two cores: the SQLite pass starts it through
    # scripts/run (below), the PostgreSQL pass (on object storage) here, on its database.
    if embedded_default_pass():
        pytest.skip("the SQLite pass runs the same through scripts/run (test_scripts_run_...)")
    url, jwt, dag, logs = request.getfixturevalue("live_airflow")
    assert dag["is_paused"] is False and dag["timetable_summary"] == "Asset or 0 0 29 2 *"
    client = APIClient()
    client.force_authenticate(admin_user)
    ids = []
    for seed in range(3):  # a burst through the API
        response = client.post("/api/v1/images/", {"file": as_upload(image_bytes(seed), name=f"photo_{seed}.jpg")})
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])

    def searchable():
        # Runs started by uploads embed them into the fresh segment; the hourly run compacts.
        images = Image.objects.filter(pk__in=ids)
        return images.count() == 3 and all(image.search_state in ("searchable", "indexed") for image in images)

    _wait("the uploads are searchable", searchable, timeout=150, logs=logs)
    assert similar(Image.objects.get(pk=ids[1]))[0].image.pk == ids[1]

    runs = airflow_get(url, jwt, "/api/v2/dags/search_index/dagRuns")["dag_runs"]
    assert runs and {run["run_type"] for run in runs} == {"asset_triggered"}
    assert len(runs) <= 2  # three uploads, one run (and at most one more for what came during it)
    [asset] = [a for a in airflow_get(url, jwt, "/api/v2/assets")["assets"] if a["uri"] == NEW_UPLOADS_ASSET_URI]
    events = airflow_get(url, jwt, f"/api/v2/assets/events?asset_id={asset['id']}")["asset_events"]
    assert 1 <= len(events) <= 3 and all(event["extra"]["source"] == "gallery" for event in events)

    # The fresh segment outgrew FRESH_SEGMENT_MAX: the upload's run asked for a compaction, and the
    # compaction DAG, started by that request alone, rebuilt the index over all three.
    indexed = lambda: set(Image.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"indexed"}  # noqa: E731
    _wait("a compaction publishes them", indexed, timeout=150, logs=logs)
    current = IndexVersion.objects.get(is_current=True)
    assert current.item_count == 3 and current.embedded_count >= 1  # the request carried the run's embed report
    compactions = airflow_get(url, jwt, f"/api/v2/dags/{COMPACT_DAG_ID}/dagRuns")["dag_runs"]
    assert compactions and {run["run_type"] for run in compactions} == {"asset_triggered"}


# --- scripts/run ---------------------------------------------------------------------------------


def _run_env(var: Path) -> dict:
    drop = ("AIRFLOW", "DATABASE_URL", "S3_", "DJANGO_", "INDEX_", "CLIP_", "GALLERY_", "ONNX_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {
        **env,
        "GALLERY_VAR_DIR": str(var),
        "GALLERY_BIND": f"127.0.0.1:{free_port()}",
        "AIRFLOW__API__PORT": str(free_port()),
        "CLIP_MODEL": "tiny-test",
        "CLIP_PRETRAINED": "random",
        "CLIP_MODEL_CONFIG_DIR": CLIP_CONFIGS,
        "INDEX_DAG_RETRIES": "0",
        "PYTHONUNBUFFERED": "1",
    }


# Execs its arguments with SIGINT at its default: a test run in the background has it ignored,
# and bash can neither trap nor reset a signal ignored on entry.
WITH_SIGINT = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"


def _start_run(env: dict, log: Path, *args) -> subprocess.Popen:
    """A session of its own, as a terminal gives `make run` (Ctrl-C there is SIGINT to its group)."""
    script = str(ROOT / "scripts" / "run")
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-c", WITH_SIGINT, script, *args], env=env, stdout=out, stderr=out,
                                start_new_session=True)


def _parts(var: Path, run: subprocess.Popen) -> dict[int, str]:
    """The parts that run.pid names, sessions by name, once that run wrote it."""
    try:
        owner, *lines = (var / "run.pid").read_text().split("\n")
    except FileNotFoundError:
        return {}
    if owner != str(run.pid):
        return {}
    return {int(sid): name for sid, name in (line.split() for line in lines if line.strip())}


@pytest.mark.django_db(transaction=False)
def test_scripts_run_starts_everything_indexes_an_import_and_stops_everything(tmp_path):
    if not embedded_default_pass():
        pytest.skip("scripts/run uses the embedded defaults: the SQLite pass runs it")
    var = tmp_path / "var"
    env = _run_env(var)
    log = tmp_path / "run-1.log"
    run, parts = _start_run(env, log), {}
    try:
        _wait("scripts/run is ready", lambda: "Ready in" in log.read_text() or run.poll() is not None, timeout=240)
        output = log.read_text()
        assert run.poll() is None, output
        parts = _parts(var, run)
        assert sorted(parts.values()) == ["airflow-api-server", "airflow-dag-processor", "airflow-scheduler", "gunicorn"]
        login = re.search(r"Airflow UI at (\S+) \(user (\S+), password (\S+);", output)
        url, username, password = login.groups()
        jwt = airflow_token(url, username, password)  # the login printed is the one Airflow knows
        assert airflow_get(url, jwt, "/api/v2/dags/search_index")["is_paused"] is False
        assert airflow_get(url, jwt, f"/api/v2/dags/{COMPACT_DAG_ID}")["is_paused"] is False

        # A photo imported by a command that exits at once: its announcement still goes out, and
        # the scheduler started by scripts/run indexes it.
        photos = tmp_path / "photos"
        photos.mkdir()
        (photos / "new.jpg").write_bytes(image_bytes(99))
        # README's commands as written: nothing exported but the var/ folder (a temporary one
        # here); the key, the model, the weights fallback and Airflow's login come from the
        # settings file that scripts/run wrote.
        chosen_by_the_run = ("CLIP_MODEL", "CLIP_PRETRAINED", "CLIP_MODEL_CONFIG_DIR", "GALLERY_BIND", "AIRFLOW__API__PORT")
        command = {k: v for k, v in env.items() if k not in chosen_by_the_run}

        def manage(*args, **extra):
            done = subprocess.run([str(ROOT / ".venv/bin/python"), "manage.py", *args], cwd=ROOT, env={**command, **extra},
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            return done

        imported = manage("import_images", str(photos))
        assert "1 added" in imported.stdout
        events = airflow_get(url, jwt, "/api/v2/assets/events")["asset_events"]
        # Posted before the command exited (its log says why not, if not).
        uploads = [event["extra"]["source"] for event in events if event["uri"] == NEW_UPLOADS_ASSET_URI]
        assert uploads == ["gallery"], imported.stderr
        gallery = f"http://{env['GALLERY_BIND']}"

        def searchable():
            with urllib.request.urlopen(f"{gallery}/api/v1/images/?page_size=100", timeout=10) as reply:
                rows = json.load(reply)["results"]
            return any(image["title"] == "new" and image["state"] in ("searchable", "indexed") for image in rows)

        # By the run its event starts, or by the hourly one that Airflow catches up at start.
        _wait("the imported photo is searchable", searchable, timeout=150, logs=[log, *sorted((var / "logs").glob("*.log"))])
        try_line = re.search(r"Try: \.venv/bin/python manage\.py (search) \"(.+)\"", output)
        found = manage(try_line[1], try_line[2]).stdout
        assert re.search(r"^\s+1\s+-?[0-9.]+\s+#\d+\s+\S", found, re.M), found  # the photos, ranked
        manage("createsuperuser", "--noinput", "--username", "curator", "--email", "c@example.org",
               DJANGO_SUPERUSER_PASSWORD="a long pass phrase")
        # README's other everyday commands, as written: the run's Airflow and login, its model.
        assert "queued" in manage("reindex").stdout
        assert "CLIP runtime" in manage("runtime").stdout
        assert re.search(r"Published index|Nothing to publish", manage("build_index").stdout)
        assert "carry the date they were taken" in manage("read_photo_facts").stdout
        assert "near-duplicate group(s)" in manage("hash_images").stdout

        # Killed outright: the parts live on. The next start stops them and starts afresh.
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert all(_session_alive(sid) for sid in parts)
        log = tmp_path / "run-2.log"
        run = _start_run(env, log)
        _wait("scripts/run starts its parts again", lambda: len(_parts(var, run)) == 4 or run.poll() is not None, timeout=240)
        output = log.read_text()
        assert run.poll() is None, output
        assert output.count("left over from an earlier run") == 4
        assert not any(_session_alive(sid) for sid in parts)
        parts = _parts(var, run)

        # Ctrl-C (while Airflow is still starting): the terminal signals the foreground group;
        # everything stops, nothing is left.
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=90) == 130
        assert "Stopped." in log.read_text()
        assert not any(_session_alive(sid) for sid in parts) and not (var / "run.pid").exists()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=90)
        for sid in parts:
            _kill_session(sid, signal.SIGKILL)

    # The web tier alone: no Airflow beside it.
    log = tmp_path / "web-only.log"
    run = _start_run(env, log, "--web-only")
    try:
        page = _wait("the web tier serves", lambda: _get(f"http://{env['GALLERY_BIND']}/"), timeout=120, logs=[log])
        assert "· Search Image</title>" in page and "web tier only" in log.read_text()
        assert not (var / "run.pid").exists()
        assert not [p for p in subprocess.run(["pgrep", "-s", str(run.pid), "-a"], capture_output=True, text=True).stdout.splitlines() if "airflow" in p]
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=60)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.read().decode()
    except OSError:
        return None

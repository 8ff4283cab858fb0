"""The Airflow DAG, with real Airflow: DagBag parsing and `airflow dags test` runs against a
migrated metadata database (SQLite, or PostgreSQL when the suite runs on PostgreSQL).

The DAG runs in another process, as under a scheduler, on this test's database and media folder.
"""

import io
import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from django.core.files.storage import default_storage
from django.db import connection

from gallery import search
from gallery.engine.index_cache import current_index
from gallery.models import Image, IndexVersion
from indexer.dag_names import COMPACTION_ASSET_URI, NEW_UPLOADS_ASSET_URI
from tests.conftest import on_object_storage
from tests.images import image_bytes
from tests.searching import similar

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = [str(ROOT / "scripts" / "airflow")]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory, django_db_setup, django_db_blocker):
    home = tmp_path_factory.mktemp("airflow-home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "INDEX_DAG_RETRIES": "0", "PYTHONUNBUFFERED": "1"}
    with django_db_blocker.unblock():
        on_postgres = connection.vendor == "postgresql"
    created = None
    if on_postgres:
        created = f"test_airflow_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {created}")
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"postgresql+psycopg2://root@127.0.0.1:5432/{created}"
    else:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    migrate = subprocess.run([*AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    yield env
    if created:
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {created} WITH (FORCE)")


def dag_env(airflow_env: dict, settings) -> dict:
    """Environment for Airflow processes whose tasks work on this test's database and media."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        url = f"sqlite:///{db['NAME']}"
    env = {
        **airflow_env,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "INDEX_CACHE_DIR": str(Path(settings.INDEX_CACHE_DIR).parent / "dag-index-cache"),
    }
    if on_object_storage():  # this test's own prefix in the bucket
        env["S3_PREFIX"] = settings.STORAGES["default"]["OPTIONS"]["location"]
    return env


@pytest.fixture
def run_dag(airflow_env, settings):
    """run_dag() -> (succeeded, log): the indexing DAG as `airflow dags test search_index` runs
    it, on this test's data, then the compaction DAG when that run asked for one, unless
    ``compact=False`` (tests/airflow_runs.py: both in one process, Airflow's start paid once)."""
    env = {**dag_env(airflow_env, settings), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    def run(compact=True, **extra_env):
        args = [sys.executable, str(ROOT / "tests" / "airflow_runs.py")] + ([] if compact else ["--no-compact"])
        done = subprocess.run(args, env={**env, **extra_env}, capture_output=True, text=True, timeout=600, cwd=ROOT)
        log = done.stdout + done.stderr
        if done.returncode != 0:
            return False, log
        runs = json.loads(done.stdout.strip().splitlines()[-1])
        return all(run["state"] == "success" for run in runs.values()), log

    return run


@pytest.fixture(scope="session")
def airflow_api(airflow_env):
    """A real Airflow API server on loopback, with one user; yields (url, username, password)."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**airflow_env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "curator:admin"}
    subprocess.run([*AIRFLOW, "dags", "reserialize"], env=env, check=True, capture_output=True)
    home = Path(env["AIRFLOW_HOME"])
    log = open(home / "api-server.log", "w")
    server = subprocess.Popen([*AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (home / "api-server.log").read_text()
                time.sleep(0.5)
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["curator"]
        yield url, "curator", password
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def upload(seed, **kwargs):
    from gallery.catalogue.uploads import image_create

    return image_create(file=io.BytesIO(image_bytes(seed)), filename=f"photo_{seed}.jpg", **kwargs)[0]


def test_dagbag_has_the_dags_without_import_errors(airflow_env):
    script = (
        "import json; from airflow.dag_processing.dagbag import DagBag;"
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r});"
        "dag, compact = bag.dags.get('search_index'), bag.dags.get('search_index_compact');"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, 'dags': sorted(bag.dags),"
        " 'tasks': sorted(dag.task_ids), 'schedule': type(dag.timetable).__name__,"
        " 'assets': [a.uri for a in dag.timetable.asset_condition.objects], 'cron': dag.timetable.timetable.expression,"
        " 'catchup': dag.catchup, 'max_active_runs': dag.max_active_runs,"
        " 'outlets': [a.uri for a in dag.get_task('request_compaction').outlets],"
        " 'compact_tasks': sorted(compact.task_ids), 'compact_assets': [a.uri for a in compact.timetable.asset_condition.objects],"
        " 'compact_max_active_runs': compact.max_active_runs}))"
    )
    done = subprocess.run([sys.executable, "-c", script], env=airflow_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"] == {} and found["dags"] == ["search_index", "search_index_compact"]
    assert found["tasks"] == [
        "embed", "find_pending", "near_duplicates", "publish", "read_text", "request_compaction", "saved_search_matches"
    ]
    # Hourly, or as soon as the gallery announces new uploads, whichever comes first.
    assert found["schedule"] == "AssetOrTimeSchedule" and found["assets"] == [NEW_UPLOADS_ASSET_URI]
    assert found["cron"] == "0 * * * *"
    assert found["catchup"] is False and found["max_active_runs"] == 1
    # The rebuild runs in a DAG of its own, started by the indexing DAG's request: a run started
    # by uploads never waits behind one.
    assert found["outlets"] == [COMPACTION_ASSET_URI] and found["compact_assets"] == [COMPACTION_ASSET_URI]
    assert found["compact_tasks"] == ["compact", "prune"] and found["compact_max_active_runs"] == 1


def test_new_uploads_become_searchable_and_a_quiet_run_changes_nothing(run_dag):
    images = [upload(seed) for seed in range(3)]
    assert current_index() is None

    ok, log = run_dag()
    assert ok, log
    assert "3 images to embed in 1 chunk(s)" in log and "embedded 3 images (0 failed)" in log
    assert set(Image.objects.values_list("status", flat=True)) == {"indexed"}
    first = IndexVersion.objects.get(is_current=True)
    # This process had no index; it loads the published one without a restart.
    assert similar(Image.objects.get(pk=images[1].pk))[0].image.pk == images[1].pk

    ok, log = run_dag()
    assert ok, log
    assert "nothing new: the current index stays" in log
    assert list(IndexVersion.objects.values_list("version", flat=True)) == [first.version]

    new = upload(10)
    ok, log = run_dag()
    assert ok, log
    assert current_index().version != first.version and len(current_index()) == 4
    assert Image.objects.get(pk=new.pk).status == "indexed"


@pytest.mark.local_storage  # the crash is injected by blocking a local folder
def test_a_broken_image_fails_alone_and_a_crashed_compaction_is_finished_next_run(run_dag, settings):
    good = [upload(seed) for seed in range(2)]
    broken = upload(5)
    default_storage.delete(broken.file.name)
    default_storage.save(broken.file.name, io.BytesIO(b"bytes that are no image"))
    ok, log = run_dag()
    assert ok, log
    broken.refresh_from_db()
    assert broken.status == "failed" and "cannot identify image" in broken.error
    assert all(Image.objects.get(pk=image.pk).status == "indexed" for image in good)
    before = IndexVersion.objects.get(is_current=True)
    assert current_index().version == before.version  # a web process serving it

    if on_object_storage():
        pytest.skip("the crash below is injected by blocking a local folder")
    # Storage refuses the publish: a file where the index folder should be.
    waiting = upload(20)
    blocker = Path(settings.MEDIA_ROOT) / "indexes"
    moved = blocker.rename(blocker.with_name("indexes-away"))
    blocker.write_text("not a folder")
    ok, log = run_dag()
    # The indexing run succeeds (it builds nothing); the compaction it asked for fails.
    assert not ok and re.search(r"DagRun Finished: dag_id=search_index,.*state=success", log)
    assert re.search(r"DagRun Finished: dag_id=search_index_compact,.*state=failed", log), log[-3000:]
    assert IndexVersion.objects.get(is_current=True).version == before.version
    waiting.refresh_from_db()
    assert waiting.status == "pending" and waiting.embedding is not None  # embedded, not yet indexed
    assert similar(Image.objects.get(pk=good[0].pk))[0].image.pk == good[0].pk  # still serves

    blocker.unlink()
    moved.rename(blocker)
    ok, log = run_dag()
    assert ok, log
    assert "0 images to embed" in log  # nothing embedded twice
    assert IndexVersion.objects.get(is_current=True).version != before.version
    assert Image.objects.get(pk=waiting.pk).status == "indexed"


def test_a_run_groups_near_duplicates_and_records_saved_search_matches_in_tasks_of_their_own(run_dag, django_user_model):
    from gallery.models import DuplicateGroup, SavedSearchMatch
    from gallery.search.saved_searches import saved_search_create
    from tests.test_duplicates import photo

    member = django_user_model.objects.create_user("member", password="member-password")
    saved = saved_search_create(user=member, query=search.text_query("a cat"))  # its vector is stored now
    cat = upload_bytes(photo("chelsea"), "cat.jpg")
    copy = upload_bytes(photo("chelsea", width=200, quality=40), "cat-small.jpg")
    coffee = upload_bytes(photo("coffee"), "coffee.jpg")

    ok, log = run_dag(compact=False, SEARCH_WEAK_SCORE="-1")  # every new image matches the saved search
    assert ok, log
    for task in ("near_duplicates", "saved_search_matches"):
        assert f"end task task_id={task} " in log, log[-3000:]
    assert "near-duplicates: 1 group(s) found or grown" in log and "saved searches: 3 new match(es) recorded" in log
    assert [set(group.members.values_list("pk", flat=True)) for group in DuplicateGroup.objects.all()] == [{cat.pk, copy.pk}]
    assert set(SavedSearchMatch.objects.filter(saved_search=saved).values_list("image", flat=True)) == {cat.pk, copy.pk, coffee.pk}


def upload_bytes(data: bytes, filename: str):
    from gallery.catalogue.uploads import image_create

    return image_create(file=io.BytesIO(data), filename=filename)[0]


def airflow_token(url: str, username: str, password: str) -> str:
    request = urllib.request.Request(
        f"{url}/auth/token", data=json.dumps({"username": username, "password": password}).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)["access_token"]


def airflow_get(url: str, token: str, path: str) -> dict:
    request = urllib.request.Request(f"{url}{path}")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def test_reindex_now_queues_a_dag_run_through_the_rest_api(airflow_api, admin_client, settings):
    # Uploaded before Airflow is configured: no announcement competes with the trigger for the
    # embedded Airflow's SQLite database, which takes one writer at a time.
    image = upload(1)
    settings.AIRFLOW_API_URL, settings.AIRFLOW_API_USERNAME, settings.AIRFLOW_API_PASSWORD = airflow_api
    response = admin_client.post("/admin/gallery/image/", {"action": "reindex_now", "_selected_action": [str(image.pk)]}, follow=True)
    text = response.content.decode()
    found = re.search(r"Airflow run (\S+) queued", text)
    assert found, re.findall(r'<li class="(?:success|error|info)">(.*?)</li>', text)
    run_id = found.group(1)
    # Airflow has the run; nothing was embedded here (a scheduler's worker will).
    run = airflow_get(airflow_api[0], airflow_token(*airflow_api), f"/api/v2/dags/search_index/dagRuns/{run_id}")
    assert run["state"] == "queued" and run["triggered_by"] == "rest_api"
    assert Image.objects.get().status == "pending"


def test_reindex_now_says_when_airflow_cannot_be_reached(admin_client, settings):
    settings.AIRFLOW_API_URL = "http://127.0.0.1:9"  # nothing listens there
    image = upload(1)
    response = admin_client.post("/admin/gallery/image/", {"action": "reindex_now", "_selected_action": [str(image.pk)]}, follow=True)
    assert "Airflow is unreachable" in response.content.decode()
    assert Image.objects.get().status == "pending"

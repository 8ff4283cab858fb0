"""The gallery on Milvus (INDEX_BACKEND=milvus, on Milvus Lite): a live engine, versions as
collections behind an alias, and what people see when Milvus cannot be reached.

The search tests of test_api, test_pages, test_parity and test_fresh_segment run on both
backends through the ``index_engine`` fixture; these are the Milvus-only promises."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from rest_framework.test import APIClient

from gallery import indexing, search
from gallery.catalogue.curation import image_delete, images_set_hidden
from gallery.engine.backend import current_reader, index_backend, reconcile_visibility
from gallery.errors import SEARCH_UNAVAILABLE, Unavailable
from gallery.indexing import recall_gate
from gallery.models import Image, IndexVersion
from tests.conftest import as_upload
from tests.images import image_bytes
from tests.searching import by_text, similar
from tests.test_backends import free_port

pytestmark = pytest.mark.django_db
API = "/api/v1"
MODEL = "tiny-test/random"


@pytest.fixture
def milvus_gallery(on_milvus, indexed_gallery):
    return indexed_gallery


def unreachable(settings):
    """Point the gallery at a Milvus that does not answer (nothing listens on the port)."""
    settings.MILVUS_URI = f"http://127.0.0.1:{free_port()}"
    settings.MILVUS_TIMEOUT = 2


def test_new_vectors_are_searchable_at_once_without_a_publish(milvus_gallery, upload):
    image = upload(300, title="Late")[0]
    assert indexing.images_embed_pending().embedded == 1
    assert Image.objects.get(pk=image.pk).status == "indexed" and indexing.fresh_segment_size() == 0
    assert similar(image)[0].image.pk == image.pk
    assert len(by_text("anything")) == 21
    # Nothing to compact: the hourly run publishes no new version on a live engine.
    assert indexing.index_compact_if_due(scheduled=True) is None and IndexVersion.objects.count() == 1


def test_hidden_rows_are_filtered_inside_milvus_so_a_page_of_sixteen_is_full(
    milvus_gallery, settings, django_capture_on_commit_callbacks
):
    hidden = [image.pk for image in milvus_gallery[:4]]
    with django_capture_on_commit_callbacks(execute=True):  # the engine is written after the commit
        images_set_hidden(images=Image.objects.filter(pk__in=hidden), hidden=True)
    vector, _ = search.text_query("a red square").vector()
    hits = current_reader().query(vector, 16)  # the engine itself returns 16 visible rows
    assert len(hits) == 16 and not set(hidden) & {pk for pk, _ in hits}
    settings.SEARCH_MAX_RESULTS = 16  # no over-fetching: still a full page
    page = search.paginate(by_text("a red square"), 1)
    assert len(page.object_list) == 16 and not set(hidden) & {hit.image.pk for hit in page.object_list}
    with django_capture_on_commit_callbacks(execute=True):
        images_set_hidden(images=Image.objects.filter(pk=hidden[0]), hidden=False)
    assert hidden[0] in {pk for pk, _ in current_reader().query(vector, 20)}


def engine_hidden(vector):
    """The ids the engine itself leaves out of a search (every row asked for)."""
    everything = {pk for pk, _ in current_reader().query(vector, 50, only_visible=False)}
    return everything - {pk for pk, _ in current_reader().query(vector, 50)}


def test_a_hide_that_rolls_back_leaves_milvus_alone_and_the_hourly_run_repairs_a_missed_write(
    milvus_gallery, settings, django_capture_on_commit_callbacks
):
    vector, _ = search.text_query("a red square").vector()
    kept, missed, stale = milvus_gallery[2], milvus_gallery[3], milvus_gallery[4]
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            images_set_hidden(images=Image.objects.filter(pk=kept.pk), hidden=True)
            raise RuntimeError("the caller's transaction fails after the hide")
    assert not Image.objects.get(pk=kept.pk).hidden
    assert engine_hidden(vector) == set()  # the engine was never told: nothing to undo
    assert len(by_text("a red square")) == 20
    # A hide whose engine write is missed (Milvus unreachable at the commit) ...
    uri = settings.MILVUS_URI
    unreachable(settings)
    with django_capture_on_commit_callbacks(execute=True):
        images_set_hidden(images=Image.objects.filter(pk=missed.pk), hidden=True)
    settings.MILVUS_URI = uri
    # ... and an engine row hidden that the database shows (as the old in-transaction write left):
    index_backend().set_visible([stale.pk], False)
    assert engine_hidden(vector) == {stale.pk}
    assert indexing.index_compact_if_due(scheduled=False) is None  # an upload's run leaves it
    assert engine_hidden(vector) == {stale.pk}
    assert indexing.index_compact_if_due(scheduled=True) is None  # the hourly run: no new version ...
    assert engine_hidden(vector) == {missed.pk}  # ... but the engine matches the database again
    assert index_backend().hidden_ids() == {missed.pk}
    results = [hit.image.pk for hit in by_text("a red square")]
    assert len(results) == 19 and missed.pk not in results and stale.pk in results
    assert reconcile_visibility() == (0, 0)  # nothing left to repair


def test_milvus_uri_naming_a_lite_file_works_for_the_commands(tmp_path):
    """pymilvus reads MILVUS_URI itself at import and refuses a file path; README documents one."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        (photos / f"p{seed}.png").write_bytes(image_bytes(seed))
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "S3_BUCKET", "AIRFLOW_API_URL")
    } | {
        "DJANGO_SETTINGS_MODULE": "tests.settings", "GALLERY_VAR_DIR": str(tmp_path / "var"),
        "INDEX_BACKEND": "milvus", "MILVUS_URI": str(tmp_path / "x.db"), "MILVUS_CONSISTENCY_LEVEL": "Strong",
    }

    def manage(*args):
        done = subprocess.run([sys.executable, "manage.py", *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "-v", "0")
    manage("import_images", str(photos))
    assert "with 3 images" in manage("reindex")
    assert (tmp_path / "x.db").exists()
    ranked = [line.split()[0] for line in manage("search", "a photo", "-k", "5").splitlines()]
    assert ranked == ["1", "2", "3"]  # the three photos, from the Lite file


def test_milvus_uri_in_a_dot_env_file_does_not_break_the_import(tmp_path):
    """pymilvus also loads a .env file (python-dotenv, from the working folder under ``-c``),
    where README puts MILVUS_URI: a Lite file named there must not stop the import either."""
    (tmp_path / ".env").write_text(f"MILVUS_URI={tmp_path / 'x.db'}\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {key: value for key, value in os.environ.items() if key != "MILVUS_URI"} | {"PYTHONPATH": root}
    code = "from indexer.backends.milvus_backend import import_pymilvus; import os; import_pymilvus(); print(repr(os.environ.get('MILVUS_URI')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "None"  # and nothing of pymilvus's left in our environment


def test_a_deleted_image_leaves_milvus(milvus_gallery, django_capture_on_commit_callbacks):
    doomed = milvus_gallery[7]
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=doomed)
    assert len(current_reader()) == 19
    assert doomed.pk not in {pk for pk, _ in current_reader().query(doomed.vector, 20, only_visible=False)}


def test_a_publish_is_a_new_collection_made_current_at_once_and_the_old_one_stays(milvus_gallery):
    backend = index_backend()
    old = IndexVersion.objects.get(is_current=True).version
    build = indexing.index_build(MODEL)  # complete, gated, but not current yet
    assert current_reader().version == old == backend.current_version()
    assert len(by_text("anything")) == 20
    assert indexing.index_activate(build, embed_report=indexing.EmbedReport()) is not None
    new = IndexVersion.objects.get(is_current=True).version
    assert new == build.version == backend.current_version() == current_reader().version
    assert {info.version for info in backend.versions()} == {old, new}  # the old one stays, for a rollback
    assert indexing.index_prune(keep=1, grace_seconds=0) == [old]
    assert [info.version for info in backend.versions()] == [new]


def test_a_build_the_recall_gate_refuses_leaves_no_collection(milvus_gallery, settings):
    backend = index_backend()
    old = backend.current_version()
    settings.RECALL_GATE_MIN_STRUCTURAL = 1.01  # no build can pass
    build = indexing.index_build(MODEL)
    assert not recall_gate.admit(build)
    assert backend.current_version() == old and [info.version for info in backend.versions()] == [old]
    assert backend._collections() == [backend.collection(old)]


def test_an_unreachable_milvus_is_a_503_on_pages_and_api_and_uploads_still_work(
    on_milvus, client, member, upload, settings
):
    image = upload(1, title="Kept")[0]
    IndexVersion.objects.create(
        version="v1", backend="milvus", model=MODEL, dim=32, item_count=1, n_trees=0, checksum="", build_seconds=0,
        is_current=True,
    )
    unreachable(settings)
    page = client.get("/search/", {"q": "a cat"})
    assert page.status_code == 503 and SEARCH_UNAVAILABLE in page.content.decode()
    assert "Traceback" not in page.content.decode()
    api = APIClient().get(f"{API}/search/", {"q": "a cat"})
    assert api.status_code == 503 and api.json() == {"detail": SEARCH_UNAVAILABLE}
    assert APIClient().get(f"{API}/images/{image.pk}/similar/").status_code == 503
    detail = client.get(image.get_absolute_url())  # the image itself is still shown
    assert detail.status_code == 200 and SEARCH_UNAVAILABLE in detail.content.decode()
    uploader = APIClient()
    uploader.force_authenticate(member)
    created = uploader.post(f"{API}/images/", {"file": as_upload(image_bytes(2)), "title": "New"})
    assert created.status_code == 201 and Image.objects.filter(title="New", status="pending").exists()
    # Hiding works too: the database is the truth; Milvus catches up when it can.
    images_set_hidden(images=Image.objects.filter(pk=image.pk), hidden=True)
    assert Image.objects.get(pk=image.pk).hidden


def test_an_unreachable_milvus_fails_the_indexing_run_and_the_next_run_catches_up(milvus_gallery, upload, settings):
    image = upload(301)[0]
    lite = settings.MILVUS_URI
    unreachable(settings)
    with pytest.raises(Unavailable):  # the DAG's embed task fails, and Airflow retries it
        indexing.images_embed_pending()
    stored = Image.objects.get(pk=image.pk)
    assert stored.status == "pending" and stored.embedding is not None  # the vector is kept
    with pytest.raises(Unavailable):
        indexing.index_compact_if_due(scheduled=False)
    settings.MILVUS_URI = lite  # back again
    assert indexing.images_embed_pending().embedded == 0  # nothing embedded twice
    assert indexing.index_compact_if_due(scheduled=False) is None  # caught up, no rebuild
    assert Image.objects.get(pk=image.pk).status == "indexed" and similar(image)[0].image.pk == image.pk
    assert np.isclose(similar(image)[0].score, 1, atol=1e-4)


@pytest.mark.usefixtures("index_engine")
def test_a_rollback_serves_the_previous_version_and_keeps_later_images_searchable(indexed_gallery, upload):
    first = IndexVersion.objects.get(is_current=True)
    late = upload(310, title="Late")[0]
    indexing.images_embed_pending()
    second = indexing.index_publish(force=True)
    assert second.item_count == 21 and current_reader().version == second.version
    assert call_command_output("rollback_index").startswith(f"Index {first.version} is current again")
    assert IndexVersion.objects.get(is_current=True) == first and current_reader().version == first.version
    if index_backend().filters_visibility:  # Milvus: the alias moved with the database
        assert index_backend().current_version() == first.version
    assert similar(late)[0].image.pk == late.pk and len(by_text("anything")) == 21
    with pytest.raises(CommandError, match="nothing to roll back to"):
        call_command_output("rollback_index")


@pytest.mark.usefixtures("index_engine")
def test_a_build_whose_publisher_died_is_dropped_by_the_next_prune(indexed_gallery, settings):
    """The database is the one registry of versions: a complete build it does not know (the
    process died between building and activating it) is dropped by the next prune, on both
    engines, once it is older than a publish may take; the current version keeps serving."""
    current = IndexVersion.objects.get(is_current=True)
    build = indexing.index_build(MODEL)  # built, never made current
    engine_holds = lambda: {info.version for info in index_backend().versions()}  # noqa: E731
    indexing.index_prune()
    assert build.version in engine_holds()  # younger than the publish lease: maybe still in flight
    settings.INDEX_PUBLISH_LEASE_SECONDS = 0  # now no publish can still be making it current
    indexing.index_prune()
    assert build.version not in engine_holds()
    assert IndexVersion.objects.get(is_current=True) == current and current_reader().version == current.version
    assert len(by_text("anything")) == 20


def call_command_output(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_switching_to_milvus_builds_a_first_collection_at_the_next_run(indexed_gallery, on_milvus, client):
    annoy = IndexVersion.objects.get(is_current=True)
    assert annoy.backend == "annoy"
    response = client.get("/search/", {"q": "a red square"})
    assert response.status_code == 409 and "the current index is in annoy" in response.content.decode()
    version = indexing.index_compact_if_due(scheduled=False)  # an upload's run, not the hourly one
    assert version.backend == "milvus" and version.item_count == 20
    assert index_backend().current_version() == version.version and len(by_text("a red square")) == 20
    assert indexing.index_prune(keep=1, grace_seconds=0) == [annoy.version]


def test_a_hide_whose_update_fails_never_reaches_milvus(milvus_gallery, django_capture_on_commit_callbacks):
    """The engine is told in the hide's own transaction, for after its commit: an update that
    fails (here a sliced QuerySet, which cannot be updated) leaves Milvus as the database is."""
    image = milvus_gallery[5]
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(TypeError):
            images_set_hidden(images=Image.objects.filter(pk=image.pk)[:1], hidden=True)
    assert not Image.objects.get(pk=image.pk).hidden and index_backend().hidden_ids() == set()

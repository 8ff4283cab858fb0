"""Faults on a real Milvus server: the server crashes and comes back during searches and during
a publish, a connection drops in the middle of an indexing run, and the consistency level.

These need a server this process may crash and restart: `scripts/test`'s Milvus pass
(``MILVUS_URI=http://127.0.0.1:19540``, started by scripts/milvus-server). Elsewhere they are
skipped; Lite's own outage tests are in test_backends and test_index_engines."""

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from rest_framework.test import APIClient

from gallery import indexing
from gallery.errors import SEARCH_UNAVAILABLE, Unavailable
from gallery.models import Image, IndexVersion
from indexer.backends import IndexUnavailable, get_backend
from tests.conftest import drop_milvus_collections, milvus_prefix, on_real_milvus
from tests.searching import by_text, similar
from tests.test_backends import IDS, VECTORS, unit_vectors

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "milvus-server"
API = "/api/v1"

pytestmark = [
    pytest.mark.skipif(not on_real_milvus(), reason="needs a Milvus server it may restart (scripts/test's Milvus pass)"),
    pytest.mark.milvus,
]


def server(command):
    subprocess.run([str(SCRIPT), command], check=True, capture_output=True, timeout=240)


@pytest.fixture
def crashable(milvus_uri):
    """crash() and restart() the server; it is running again after the test in any case."""
    state = {"down": False}

    def crash():
        server("crash")
        state["down"] = True

    def restart():
        server("restart")
        state["down"] = False

    yield crash, restart
    if state["down"]:
        restart()


@pytest.fixture
def milvus(milvus_uri):
    backend = get_backend("milvus", uri=milvus_uri, prefix=milvus_prefix(), consistency_level="Strong", timeout=30)
    yield backend
    backend.close()
    drop_milvus_collections(uri=milvus_uri, prefix=backend.prefix)


def scores(results):
    return {hit.image.pk: hit.score for hit in results}


def until_answered(call, seconds=90):
    """Call until it stops raising IndexUnavailable (the server recovering); every other
    outcome fails the test. Returns the answer and how many calls were refused."""
    refused, deadline = 0, time.monotonic() + seconds
    while True:
        try:
            return call(), refused
        except IndexUnavailable:
            refused += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.django_db
def test_searches_while_the_server_restarts_answer_503_then_the_same_results(
    on_milvus, indexed_gallery, crashable, settings
):
    crash, restart = crashable
    settings.MILVUS_TIMEOUT = 3
    api = APIClient()
    assert len(api.get(f"{API}/search/", {"q": "a red square"}).json()["results"]) == 16  # a full first page
    before = scores(by_text("a red square"))
    assert len(before) == 20
    crash()
    down = api.get(f"{API}/search/", {"q": "a red square"})
    assert down.status_code == 503 and down.json() == {"detail": SEARCH_UNAVAILABLE}
    with pytest.raises(Unavailable):
        similar(indexed_gallery[0])
    restart()
    settings.MILVUS_TIMEOUT = 30  # a restarted server takes a while to load its collections
    # The same process: it connects again, the collection is loaded
    # again if the server came back without it, and the answers are those of before.
    _, refused = until_answered(lambda: indexing.index_backend().open().query(np.ones(32, np.float32), 1))
    after = api.get(f"{API}/search/", {"q": "a red square"})
    assert after.status_code == 200 and len(after.json()["results"]) == 16
    # The same images with the same scores (the order of near-ties may change: the restarted
    # server searches the sealed, indexed segment where it searched the growing one before).
    again = scores(by_text("a red square"))
    assert again.keys() == before.keys() and all(abs(again[pk] - before[pk]) < 1e-4 for pk in before)
    assert similar(indexed_gallery[0])[0].image.pk == indexed_gallery[0].pk


def test_a_crash_during_a_publish_serves_no_half_built_version_and_a_retry_succeeds(milvus, crashable):
    crash, restart = crashable
    milvus.activate(milvus.publish(IDS, VECTORS, model_id="m", version="v1").version)

    def batches():
        yield IDS[:200], VECTORS[:200], None
        crash()  # the server dies in the middle of the build
        yield IDS[200:], VECTORS[200:], None

    with pytest.raises(IndexUnavailable, match="could not"):
        milvus.publish_batches(batches(), model_id="m", version="v2")
    restart()
    reader, _ = until_answered(lambda: milvus.open(), seconds=120)
    # Still complete and current after the restart (Milvus 2.3 forgets altered collection
    # properties on a restart; the complete mark is an alias, which it keeps).
    assert milvus.current_version() == "v1" and [info.version for info in milvus.versions()] == ["v1"]
    assert len(reader) == 400 and reader.query(VECTORS[250], 1)[0][0] == IDS[250]  # nothing lost
    # The half-built collection is not a version; the retry (Airflow's) builds a complete one.
    milvus.activate(milvus.publish(IDS, VECTORS, model_id="m", version="v3").version)
    assert milvus.current_version() == "v3" and len(milvus.open()) == 400


@pytest.mark.django_db
def test_a_connection_dropped_in_the_middle_of_an_indexing_run_fails_it_and_the_retry_catches_up(
    on_milvus, indexed_gallery, upload, crashable, settings
):
    crash, restart = crashable
    settings.MILVUS_TIMEOUT = 3
    late = [upload(400 + seed, title=f"Late {seed}")[0] for seed in range(3)]
    crash()
    with pytest.raises(Unavailable):  # the embed task fails: Airflow retries it
        indexing.images_embed_pending()
    assert all(image.embedding is not None for image in Image.objects.filter(pk__in=[i.pk for i in late]))
    restart()
    settings.MILVUS_TIMEOUT = 30
    until_answered(lambda: indexing.index_backend().current_version())
    assert indexing.images_embed_pending().embedded == 0  # nothing embedded twice
    assert indexing.index_compact_if_due(scheduled=False) is None  # upserted, no rebuild
    assert IndexVersion.objects.count() == 1
    assert set(Image.objects.filter(pk__in=[i.pk for i in late]).values_list("status", flat=True)) == {"indexed"}
    assert similar(late[1])[0].image.pk == late[1].pk and len(by_text("anything")) == 23


def test_strong_consistency_sees_every_write_at_once(milvus):
    """The gallery's tests and curation rely on `Strong` seeing a write at once; on this
    server a `Bounded` search usually misses writes of the last few seconds (checked by hand:
    docs/performance.md)."""
    milvus.activate(milvus.publish(IDS, VECTORS, model_id="m", version="v1").version)
    reader = milvus.open()
    for turn in range(5):
        pk, vector = 900_000 + turn, unit_vectors(1, seed=500 + turn)
        milvus.upsert([pk], vector, model_id="m")
        assert reader.query(vector[0], 1)[0][0] == pk
        milvus.set_visible([pk], False)
        assert pk not in [hit for hit, _ in reader.query(vector[0], 3)]

"""indexer.backends: the same contract tested on Annoy files and on Milvus (Milvus Lite, or
the server ``MILVUS_URI`` names: `scripts/test`'s pass on a real Milvus 2.3.5).

Where the engines differ by design (a snapshot engine versus a live one), a test asserts what
the backend's ``needs_fresh_segment`` / ``filters_visibility`` flags promise.
"""

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from indexer.backends import IndexUnavailable, VersionNotFound, get_backend
from indexer.backends.milvus_backend import takes_partial_upserts
from indexer.index import IndexMismatch
from tests.conftest import drop_milvus_collections, milvus_prefix

DIM = 32


def unit_vectors(n, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def near(vector, n, spread=0.05, seed=1):
    """``n`` unit vectors close to ``vector`` (a cluster of look-alikes)."""
    rng = np.random.default_rng(seed)
    points = vector + spread * rng.normal(size=(n, len(vector)))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def exact(ids, vectors, query, k):
    order = np.argsort(-(vectors @ query))[:k]
    return [int(ids[i]) for i in order]


IDS = (np.arange(400) + 1) * 1000 + 7  # sparse primary keys, none below 1000
VECTORS = unit_vectors(400)


def make_backend(name, tmp_path, milvus_uri, **options):
    if name == "annoy":
        return get_backend("annoy", root=tmp_path / "annoy", n_trees=10, **options)
    return get_backend(
        "milvus", uri=milvus_uri, prefix=milvus_prefix(), consistency_level="Strong",
        index_params={"M": 16, "efConstruction": 64}, **options,
    )


@pytest.fixture(params=["annoy", "milvus"])
def backend(request, tmp_path, milvus_uri):
    backend = make_backend(request.param, tmp_path, milvus_uri)
    yield backend
    backend.close()
    if backend.name == "milvus":
        drop_milvus_collections(uri=milvus_uri, prefix=backend.prefix)


def leftovers(backend):
    """What storage holds besides complete versions: build directories or collections."""
    if backend.name == "annoy":
        complete = {info.version for info in backend.versions()}
        return sorted(p.name for p in backend.root.iterdir() if p.name not in complete | {"CURRENT"})
    complete = {backend.collection(info.version) for info in backend.versions()}
    return sorted(set(backend._collections()) - complete)


def test_publish_then_query_returns_external_ids_with_cosine_scores_best_first(backend):
    info = backend.publish(IDS, VECTORS, model_id="m/1", version="20260101T000000Z-aaaaaa")
    assert (info.version, info.model, info.dim, info.item_count) == ("20260101T000000Z-aaaaaa", "m/1", DIM, 400)
    reader = backend.open(info.version)
    assert len(reader) == 400
    hits = reader.query(VECTORS[17], 10)
    assert hits[0] == (IDS[17], pytest.approx(1.0, abs=1e-5))
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[1][1] == pytest.approx(float(np.sort(VECTORS @ VECTORS[17])[-2]), abs=1e-4)
    assert len({pk for pk, _ in hits} & set(exact(IDS, VECTORS, VECTORS[17], 10))) >= 9


def test_a_new_version_serves_only_once_activated_and_open_readers_keep_theirs(backend):
    assert backend.current_version() is None
    with pytest.raises(VersionNotFound):
        backend.open()
    first = backend.publish(IDS[:200], VECTORS[:200], model_id="m", version="v1")
    assert backend.current_version() is None  # published is not current
    backend.activate(first.version)
    before = backend.open()
    second = backend.publish(IDS[200:], VECTORS[200:], model_id="m", version="v2")
    assert backend.current_version() == "v1" and backend.open().version == "v1"
    assert [info.version for info in backend.versions()] == ["v1", "v2"]
    backend.activate(second.version)
    after = backend.open()
    assert after.version == "v2" and after.query(VECTORS[250], 1)[0][0] == IDS[250]
    assert before.version == "v1" and before.query(VECTORS[250], 1)[0][0] != IDS[250]  # not in v1


def test_a_failed_publish_leaves_nothing_and_the_current_version_serves_on(backend):
    backend.activate(backend.publish(IDS, VECTORS, model_id="m", version="v1").version)

    def batches():
        yield IDS[:100], VECTORS[:100], None
        raise OSError("the database went away while reading vectors")

    with pytest.raises(OSError, match="went away"):
        backend.publish_batches(batches(), model_id="m", version="v2")
    assert [info.version for info in backend.versions()] == ["v1"]
    assert leftovers(backend) == []
    with pytest.raises(VersionNotFound):
        backend.open("v2")
    with pytest.raises(VersionNotFound):
        backend.activate("v2")
    assert backend.current_version() == "v1" and backend.open().query(VECTORS[3], 1)[0][0] == IDS[3]


def test_sweep_drops_old_versions_the_caller_does_not_know_never_the_current_one(backend):
    for n in (1, 2, 3):
        backend.publish(IDS, VECTORS, model_id="m", version=f"v{n}")
    backend.activate("v1")
    assert backend.sweep(known={"v2"}, older_than=3600) == []  # younger than an hour: maybe in flight
    assert backend.sweep(known={"v2"}, older_than=0) == ["v3"]  # v1 is current, v2 is known
    assert [info.version for info in backend.versions()] == ["v1", "v2"]
    with pytest.raises(ValueError, match="current"):
        backend.drop("v1")
    assert backend.open().query(VECTORS[0], 1)[0][0] == IDS[0]


def test_a_version_refuses_another_model_and_other_dimensions(backend):
    info = backend.publish(IDS, VECTORS, model_id="ViT-B-32/openai", version="v1")
    reader = backend.open(info.version)
    reader.info.check_model("ViT-B-32/openai#onnx-int8")  # another runtime of the same model
    with pytest.raises(IndexMismatch, match="CLIP_MODEL/CLIP_PRETRAINED"):
        reader.info.check_model("ViT-L-14/laion2b")
    with pytest.raises(IndexMismatch, match="dimensions"):
        reader.query(np.ones(DIM + 1, dtype=np.float32), 5)


def test_excluded_ids_never_come_back_and_k_stays_full(backend):
    backend.activate(backend.publish(IDS, VECTORS, model_id="m", version="v1").version)
    best = exact(IDS, VECTORS, VECTORS[9], 20)
    hits = backend.open().query(VECTORS[9], 10, exclude_ids=best[:5])
    assert len(hits) == 10
    assert not set(best[:5]) & {pk for pk, _ in hits}


def test_new_vectors_are_searchable_at_once_or_after_the_next_publish(backend):
    backend.activate(backend.publish(IDS, VECTORS, model_id="m", version="v1").version)
    reader = backend.open()
    fresh = unit_vectors(1, seed=99)
    searchable = backend.upsert([123_456], fresh, model_id="m")
    top = reader.query(fresh[0], 1)[0][0]
    if backend.needs_fresh_segment:  # Annoy: the caller searches its fresh segment meanwhile
        assert searchable == 0 and top != 123_456
        info = backend.publish(np.append(IDS, 123_456), np.vstack([VECTORS, fresh]), model_id="m", version="v2")
        backend.activate(info.version)
        assert backend.open().query(fresh[0], 1)[0][0] == 123_456
    else:  # Milvus: no fresh segment
        assert searchable == 1 and top == 123_456
        assert backend.upsert([123_456], unit_vectors(1, seed=5), model_id="m") == 1  # replaced, not doubled
        assert [pk for pk, _ in reader.query(fresh[0], 400)].count(123_456) == 1


def test_hidden_and_deleted_rows_are_filtered_in_the_engine_or_left_to_the_caller(backend):
    query = unit_vectors(1, seed=42)[0]
    cluster = near(query, 30)
    ids = np.concatenate([IDS, np.arange(30) + 1])
    backend.activate(backend.publish(ids, np.vstack([VECTORS, cluster]), model_id="m", version="v1").version)
    reader = backend.open()
    hidden, deleted = [1, 2, 3, 4, 5], [6, 7, 8]
    changed = backend.set_visible(hidden + [999_999_999], False), backend.delete(deleted)
    hits = [pk for pk, _ in reader.query(query, 16)]
    assert len(hits) == 16  # a full page
    if backend.filters_visibility:
        assert changed == (5, 3)  # the unknown id changes nothing
        assert not set(hits) & set(hidden + deleted)
        assert set(hits) <= set(range(9, 31))
        backend.set_visible([3], True)
        assert 3 in [pk for pk, _ in reader.query(query, 16)]
    else:  # Annoy knows nothing of visibility: the caller drops these rows itself
        assert changed == (0, 0)
        assert set(hits) & set(hidden + deleted)


def test_the_factory_names_its_backends():
    with pytest.raises(ValueError, match="annoy, milvus"):
        get_backend("faiss")


def test_indexer_imports_without_pymilvus(tmp_path):
    """Annoy deployments need no Milvus packages; asking for Milvus without them says what to install."""
    script = f"""
import sys
sys.modules["pymilvus"] = None  # as if not installed
from indexer.backends import get_backend
backend = get_backend("annoy", root={str(tmp_path)!r})
assert backend.current_version() is None
try:
    get_backend("milvus", uri="x.db")
except ImportError as exc:
    assert "pymilvus" in str(exc), exc
    print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


# -- Milvus only ----------------------------------------------------------------------------


@pytest.fixture
def milvus(tmp_path, milvus_uri):
    backend = make_backend("milvus", tmp_path, milvus_uri)
    yield backend
    backend.close()
    drop_milvus_collections(uri=milvus_uri, prefix=backend.prefix)


def test_changes_made_while_a_publish_runs_reach_the_new_version(milvus):
    milvus.activate(milvus.publish(IDS, VECTORS, model_id="m", version="v1").version)
    late = unit_vectors(1, seed=77)

    def batches():
        yield IDS[:200], VECTORS[:200], None
        # Meanwhile an upload is embedded, an image hidden and one deleted:
        milvus.upsert([777], late, model_id="m")
        milvus.set_visible([IDS[10]], False)
        milvus.delete([IDS[20]])
        yield IDS[200:], VECTORS[200:], None

    milvus.activate(milvus.publish_batches(batches(), model_id="m", version="v2").version)
    reader = milvus.open()
    assert reader.query(late[0], 1)[0][0] == 777
    assert IDS[10] not in [pk for pk, _ in reader.query(VECTORS[10], 5)]
    assert IDS[20] not in [pk for pk, _ in reader.query(VECTORS[20], 5)]
    assert len(reader) == 400  # 400 published + 777 - IDS[20]


@pytest.mark.parametrize("partial", [None, False], ids=["as-the-server-says", "full-row"])
def test_hiding_and_showing_keep_the_row_whether_or_not_the_server_takes_partial_upserts(milvus, partial):
    """Milvus before 2.6.2 (the PyPI 2.3.5 server, 2.4, 2.5) refuses an upsert without the
    vector; there the row is read and written whole. Same answers either way."""
    milvus.activate(milvus.publish(IDS, VECTORS, model_id="m", version="v1").version)
    if partial is not None:
        milvus._partial_upserts = partial  # as on a server without partial upserts
    reader = milvus.open()
    assert milvus.set_visible([IDS[3], IDS[4], 999_999_999], False) == 2  # a missing id is not inserted
    assert milvus.hidden_ids() == {IDS[3], IDS[4]} and len(reader) == 400
    assert not {IDS[3], IDS[4]} & {pk for pk, _ in reader.query(VECTORS[3], 10)}
    assert milvus.set_visible([IDS[3]], True) == 1
    pk, score = reader.query(VECTORS[3], 1)[0]
    assert pk == IDS[3] and score == pytest.approx(1.0, abs=1e-4)  # the vector came through intact
    assert milvus.hidden_ids() == {IDS[4]}


def test_partial_upserts_are_used_from_milvus_2_6_2_and_on_lite():
    assert not takes_partial_upserts("v2.3.5-lite")  # the PyPI standalone server, despite its name
    assert not takes_partial_upserts("v2.5.14") and not takes_partial_upserts("2.6.1")
    assert takes_partial_upserts("v2.6.2") and takes_partial_upserts("v2.10.0")
    assert takes_partial_upserts("milvus_lite-3.2.2")  # Milvus Lite's own numbering
    assert not takes_partial_upserts("") and not takes_partial_upserts("unknown")  # the write every server takes


def test_vectors_of_another_model_do_not_enter_the_current_version(milvus):
    milvus.activate(milvus.publish(IDS, VECTORS, model_id="old/model", version="v1").version)
    assert milvus.upsert([5], unit_vectors(1, seed=3), model_id="new/model") == 0
    assert milvus.upsert([5], unit_vectors(1, dim=16, seed=3), model_id="old/model") == 0
    assert len(milvus.open()) == 400


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_lite_server(data_dir, port):
    server = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("milvus-lite server did not start")


@pytest.fixture
def lite_server(tmp_path):
    """A Milvus Lite server in its own process, as a remote Milvus would be: it can be stopped."""
    port = free_port()
    servers = [start_lite_server(tmp_path / "server", port)]
    yield port, servers, lambda: servers.append(start_lite_server(tmp_path / "server", port))
    for server in servers:
        server.kill()
        server.wait()


def test_an_unreachable_milvus_gives_one_clear_exception_and_recovers(lite_server):
    port, servers, restart = lite_server
    backend = get_backend("milvus", uri=f"http://127.0.0.1:{port}", prefix="t", timeout=5, consistency_level="Strong")
    backend.activate(backend.publish(IDS, VECTORS, model_id="m", version="v1").version)
    reader = backend.open()
    servers[0].terminate()
    servers[0].wait()
    for call in (
        lambda: reader.query(VECTORS[1], 5),
        lambda: backend.open(),
        lambda: backend.current_version(),
        lambda: backend.upsert([1], VECTORS[:1], model_id="m"),
        lambda: backend.set_visible([IDS[1]], False),
        lambda: backend.publish(IDS, VECTORS, model_id="m", version="v2"),
    ):
        with pytest.raises(IndexUnavailable, match=f"Milvus at http://127.0.0.1:{port} could not"):
            call()
    restart()  # the server comes back (with its collections released, as Lite does)
    assert reader.query(VECTORS[1], 1)[0][0] == IDS[1]
    assert backend.current_version() == "v1"
    backend.close()


def test_a_milvus_that_never_answered_fails_on_use_not_on_construction():
    backend = get_backend("milvus", uri=f"http://127.0.0.1:{free_port()}", prefix="t", timeout=2)
    with pytest.raises(IndexUnavailable, match="could not connect"):
        backend.current_version()

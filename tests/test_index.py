"""indexer.index: build, publish atomically, load memory-mapped, query."""

import json

import numpy as np
import pytest

from indexer.index import (
    DEFAULT_SEARCH_K,
    FILES,
    REDUCED_FILES,
    RERANK_CANDIDATES,
    SEARCH_K_CHOICES,
    IndexCorrupt,
    IndexMismatch,
    Manifest,
    SearchIndex,
    _kth_nearest_score,
    build_index,
    prefer_whole,
    spatial_order,
    tune_search_k,
)


def unit_vectors(n, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    # A decaying spectrum, like real embeddings, rather than uniform noise.
    vectors = rng.normal(size=(n, dim)) * (1.0 / np.arange(1, dim + 1)) ** 0.5
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_build_writes_a_complete_version_directory(tmp_path):
    ids = np.array([5, 1_000_000_007, 42])  # sparse primary keys
    manifest = build_index(ids, unit_vectors(3), model="m/1", out_dir=tmp_path, n_trees=4, version="v1")
    version_dir = tmp_path / "v1"
    # 32 dimensions: too few to reduce; the forest is over the whole vectors.
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(set(FILES) - set(REDUCED_FILES)) == sorted(manifest.files)
    assert manifest.files == ("index.ann", "ids.npy", "manifest.json")  # what code from before the components reads
    assert manifest.reduced_dim == 0
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temporary directory left behind
    on_disk = json.loads((version_dir / "manifest.json").read_text())
    assert on_disk["model"] == "m/1" and on_disk["dim"] == 32 and on_disk["metric"] == "angular"
    assert on_disk["n_trees"] == 4 and on_disk["item_count"] == 3 and on_disk["version"] == "v1"
    assert on_disk["checksum"] == manifest.checksum and on_disk["created_at"]
    # Annoy holds items 0..n-1, not the sparse keys: the file stays small.
    assert (version_dir / "index.ann").stat().st_size < 100_000


def test_query_returns_external_ids_with_cosine_scores_in_rank_order(tmp_path):
    vectors = unit_vectors(200)
    ids = np.arange(200) * 1000 + 7
    build_index(ids, vectors, model="m", out_dir=tmp_path, n_trees=10, version="v")
    index = SearchIndex(tmp_path / "v")
    hits = index.query(vectors[17], 10)
    assert hits[0][0] == 17 * 1000 + 7 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    exact = vectors @ vectors[17]
    assert hits[1][1] == pytest.approx(np.sort(exact)[-2], abs=1e-4)


def test_items_are_stored_near_their_neighbours_and_keep_their_ids(tmp_path):
    """The file holds near vectors near each other (a query reads runs, not scattered rows);
    every item still answers with its own id."""
    vectors = unit_vectors(4000, dim=64, seed=3)
    ids = np.arange(4000) * 3 + 11
    build_index(ids, vectors, model="m", out_dir=tmp_path, n_trees=10, version="v")
    index = SearchIndex(tmp_path / "v")
    stored = vectors[(index.ids - 11) // 3]  # the vectors in the file's order
    neighbours = np.mean(np.sum(stored[:-1] * stored[1:], axis=1))  # cosine of each item and the next
    arrival = np.mean(np.sum(vectors[:-1] * vectors[1:], axis=1))  # the rows as given: unrelated
    assert neighbours > arrival + 0.15, (neighbours, arrival)  # 0.18 against 0.00 here
    assert [index.query(vectors[n], 1)[0][0] for n in (0, 1234, 3999)] == [11, 1234 * 3 + 11, 3999 * 3 + 11]
    order = spatial_order(vectors)
    assert sorted(order.tolist()) == list(range(4000)) and np.array_equal(order, spatial_order(vectors))


def test_default_search_k_gives_high_recall(tmp_path):
    vectors = unit_vectors(5000, dim=64, seed=1)
    build_index(np.arange(5000), vectors, model="m", out_dir=tmp_path, n_trees=20, version="v")
    index = SearchIndex(tmp_path / "v")
    queries = unit_vectors(50, dim=64, seed=2)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [len(set(truth[i]) & {pk for pk, _ in index.query(q, 10)}) / 10 for i, q in enumerate(queries)]
    assert np.mean(found) >= 0.97


def test_each_build_measures_the_fewest_nodes_that_find_the_recall_target(tmp_path):
    """A version's search_k is the smallest choice whose measured recall@10 reaches the target
    (the largest, and the recall it found, when none does); queries inspect that many nodes."""
    vectors = unit_vectors(5000, dim=64, seed=1)
    chosen = {}
    for target in (0.5, 0.98, 1.01):
        manifest = build_index(np.arange(5000), vectors, model="m", out_dir=tmp_path, n_trees=20, version=f"v{target}", recall_target=target)
        chosen[target] = (manifest.search_k, manifest.measured_recall)
    assert chosen[0.5][0] == SEARCH_K_CHOICES[0] and chosen[0.5][1] >= 0.5
    assert chosen[0.98][1] >= 0.98 and SEARCH_K_CHOICES[0] < chosen[0.98][0] < SEARCH_K_CHOICES[-1], chosen
    assert chosen[1.01] == (SEARCH_K_CHOICES[-1], pytest.approx(1.0, abs=0.001)), chosen  # 40,000 inspects all 5,000
    index = SearchIndex(tmp_path / "v0.98")
    assert index.search_k == chosen[0.98][0]
    # Fewest within 1.5x: on this forest and sample, two thirds of the nodes chosen miss the
    # target (doubling choices took 5,000 here where ~2,700 reach it).
    items_rows = np.asarray(index.ids)  # ids are rows here
    fewer = chosen[0.98][0] * 2 // 3
    assert tune_search_k(index._forest, vectors, items_rows, choices=(fewer,))[1] < 0.98, (fewer, chosen)
    # The measure holds for queries it did not see: new vectors of the same kind.
    queries = unit_vectors(100, dim=64, seed=2)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [len(set(truth[i]) & {pk for pk, _ in index.query(q, 10)}) for i, q in enumerate(queries)]
    assert np.mean(found) / 10 >= 0.96
    # What a query asks Annoy for: the version's choice, a configured number, or twice k.
    asked = []
    real = index._forest

    class Spy:
        def get_nns_by_vector(self, vector, k, search_k, include_distances):
            asked.append(search_k)
            return real.get_nns_by_vector(vector, k, search_k=search_k, include_distances=include_distances)

    index._forest = Spy()
    index.query(queries[0], 10)
    index.query(queries[0], 10, search_k=777)
    index.query(queries[0], 3000)
    assert asked == [chosen[0.98][0], 777, max(chosen[0.98][0], 6000)]
    # At its own nodes a 320-result search still gets 320 different images.
    index._forest = real
    assert len({pk for pk, _ in index.query(queries[1], 320)}) == 320


def test_a_forest_over_principal_components_is_re_ranked_by_the_whole_vectors(tmp_path):
    """Over its first principal components a forest's candidates are re-ranked by the whole
    vectors: the scores are the exact cosines, the top 10 as good as the build measured, and a
    query asks the forest for RERANK_CANDIDATES however few results it wants."""
    vectors = unit_vectors(3000, dim=256, seed=5)
    ids = np.arange(3000) * 2 + 1
    manifest = build_index(ids, vectors, model="m", out_dir=tmp_path, n_trees=10, version="v", reduced_dims=32)
    assert manifest.reduced_dim == 32 and manifest.metric == "dot" and manifest.measured_recall >= 0.98
    # Its forest under another name than index.ann: code from before the components, which
    # would read it as a forest over the whole vectors, finds none and keeps its version.
    assert manifest.files == ("index-reduced.ann", "ids.npy", "projection.npy", "vectors.npy", "manifest.json")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(manifest.files) == sorted(set(FILES) - {"index.ann"})
    index = SearchIndex(tmp_path / "v")
    assert index._forest.f == 32 and np.load(tmp_path / "v" / "projection.npy").shape == (256, 32)
    queries = unit_vectors(100, dim=256, seed=6)
    exact = queries @ vectors.T
    found = 0
    for n, query in enumerate(queries):
        hits = index.query(query, 10)
        got = [(pk - 1) // 2 for pk, _ in hits]
        assert [score for _, score in hits] == pytest.approx(exact[n, got].tolist(), abs=1e-5)  # exact cosines, best first
        assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
        found += len(set(got) & set(np.argsort(-exact[n])[:10].tolist()))
    assert found / 1000 >= 0.97
    assert index.query(vectors[1234], 1) == [(1234 * 2 + 1, pytest.approx(1.0, abs=1e-5))]
    # Mapped at load (INDEX_PREFAULT), the whole vectors answer the same.
    assert SearchIndex(tmp_path / "v", prefault=True).query(queries[3], 20) == index.query(queries[3], 20)
    asked = []
    real = index._forest

    class Spy:
        def get_nns_by_vector(self, vector, k, search_k):
            asked.append((len(vector), k, search_k))
            return real.get_nns_by_vector(vector, k, search_k=search_k)

    index._forest = Spy()
    index.query(queries[0], 10)
    index.query(queries[0], 320)  # a search's: its deeper results re-ranked from twice as many
    index.query(queries[0], 2000)
    assert asked == [(32, RERANK_CANDIDATES, manifest.search_k), (32, 640, manifest.search_k), (32, 4000, 8000)], asked
    index._forest = real
    assert len({pk for pk, _ in index.query(queries[1], 320)}) == 320


def test_a_reduced_forest_that_misses_the_recall_target_gives_way_to_the_whole_vectors(tmp_path, caplog):
    """Vectors spread evenly over their dimensions lose their neighbours in a few components:
    the build measures it, builds over the whole vectors too, and keeps the forest that meets the
    target."""
    rng = np.random.default_rng(8)
    vectors = rng.normal(size=(2000, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    manifest = build_index(np.arange(2000), vectors, model="m", out_dir=tmp_path, n_trees=5, version="v", reduced_dims=8)
    assert manifest.reduced_dim == 0 and manifest.metric == "angular" and manifest.measured_recall >= 0.98
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(manifest.files) and "vectors.npy" not in manifest.files
    assert SearchIndex(tmp_path / "v").query(vectors[77], 1)[0][0] == 77
    assert "built over the whole vectors" in caplog.text


def test_a_reduced_forest_needing_more_nodes_than_one_over_the_whole_vectors_gives_way(tmp_path, monkeypatch):
    """Meeting the target is not enough: a reduced forest that needs more than
    COMPARE_ABOVE_NODES is compared with one over the whole vectors, built too, and the one that
    meets the target with fewer nodes is kept (a tie keeps the reduced one, its nodes smaller)."""
    from indexer import index as annoy_index

    assert prefer_whole((20_000, 0.985), (10_000, 0.99), 0.98)  # fewer nodes for the target
    assert not prefer_whole((10_000, 0.985), (10_000, 0.99), 0.98)  # a tie on nodes: the reduced one
    assert not prefer_whole((40_000, 0.985), (5_000, 0.97), 0.98)  # the whole one misses the target
    assert prefer_whole((40_000, 0.95), (40_000, 0.97), 0.98)  # both miss: the better recall
    vectors = unit_vectors(3000, dim=256, seed=5)
    monkeypatch.setattr(annoy_index, "COMPARE_ABOVE_NODES", 0)  # compare whatever the reduced one needs
    compared = build_index(np.arange(3000), vectors, model="m", out_dir=tmp_path, n_trees=10, version="v", reduced_dims=32)
    alone = build_index(np.arange(3000), vectors, model="m", out_dir=tmp_path, n_trees=10, version="whole", reduced_dims=0)
    kept_reduced = compared.reduced_dim == 32
    assert kept_reduced == (not prefer_whole((compared.search_k, compared.measured_recall), (alone.search_k, alone.measured_recall), 0.98))
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(compared.files)  # the other forest removed


def test_a_damaged_vectors_file_is_refused(tmp_path):
    build_index(np.arange(600), unit_vectors(600, dim=64), model="m", out_dir=tmp_path, n_trees=4, version="v", reduced_dims=16)
    with open(tmp_path / "v" / "vectors.npy", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00garbage")
    with pytest.raises(IndexCorrupt, match="vectors.npy does not match the checksum"):
        SearchIndex(tmp_path / "v")


def test_the_exact_kth_neighbour_is_found_across_blocks_with_duplicates_tied():
    vectors = unit_vectors(300, dim=16, seed=4) * 3.0  # not unit length: cosines all the same
    vectors[7] = vectors[8]  # a duplicate: each is the other's nearest, at cosine 1
    rows = np.array([0, 7, 150, 299])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit[rows] @ unit.T
    cosines[np.arange(len(rows)), rows] = -np.inf
    expected = np.sort(cosines, axis=1)[:, -10]
    assert np.allclose(_kth_nearest_score(vectors, rows, 10, block=7), expected, atol=1e-5)
    assert _kth_nearest_score(vectors, rows, 1, block=64)[1] == pytest.approx(1.0, abs=1e-5)


def test_a_version_built_before_search_k_was_measured_is_queried_with_the_old_default(tmp_path):
    build_index(np.arange(50), unit_vectors(50), model="m", out_dir=tmp_path, n_trees=2, version="v")
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    del manifest["search_k"], manifest["measured_recall"]
    (tmp_path / "v" / "manifest.json").write_text(json.dumps(manifest))
    index = SearchIndex(tmp_path / "v")
    assert index.search_k == DEFAULT_SEARCH_K and index.manifest.measured_recall == 0.0
    assert index.query(unit_vectors(50)[7], 1)[0][0] == 7


def test_a_damaged_file_is_refused(tmp_path):
    build_index(np.arange(10), unit_vectors(10), model="m", out_dir=tmp_path, n_trees=2, version="v")
    with open(tmp_path / "v" / "index.ann", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00garbage")
    with pytest.raises(IndexCorrupt, match="checksum"):
        SearchIndex(tmp_path / "v")


def test_a_missing_manifest_is_refused(tmp_path):
    with pytest.raises(IndexCorrupt, match="manifest"):
        SearchIndex(tmp_path)


def test_the_model_must_match(tmp_path):
    manifest = build_index(np.arange(3), unit_vectors(3), model="ViT-B-32/openai", out_dir=tmp_path, version="v")
    manifest.check_model("ViT-B-32/openai")
    with pytest.raises(IndexMismatch, match="CLIP_MODEL/CLIP_PRETRAINED"):
        manifest.check_model("ViT-L-14/laion2b")
    with pytest.raises(IndexMismatch, match="dimensions"):
        SearchIndex(tmp_path / "v").query(np.ones(16, dtype=np.float32), 3)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        build_index(np.array([1, 1]), unit_vectors(2), model="m", out_dir=tmp_path)
    with pytest.raises(ValueError, match="one vector per id"):
        build_index(np.array([1, 2, 3]), unit_vectors(2), model="m", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_manifest_round_trip():
    manifest = Manifest("v", "m", 8, "angular", 3, 10, "a" * 64, "b" * 64, "2026-01-01T00:00:00+00:00", 0.5)
    assert Manifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(IndexCorrupt):
        Manifest.from_json('{"version": "v"}')


@pytest.mark.parametrize("name, value, sound, says", [
    ("INDEX_SEARCH_K", "-1", "5000", "INDEX_SEARCH_K is a number of nodes"),
    ("INDEX_RECALL_TARGET", "1.5", "0.9", "INDEX_SEARCH_K is a number of nodes"),
    ("INDEX_REDUCED_DIMS", "-1", "0", "INDEX_REDUCED_DIMS is a number of principal components"),
])
def test_a_nonsense_nodes_recall_or_dimensions_setting_is_refused_at_start(tmp_path, name, value, sound, says):
    from tests.test_access import check_deploy

    done = check_deploy(tmp_path, "check", **{name: value})
    assert done.returncode != 0 and says in done.stderr
    assert check_deploy(tmp_path, "check", **{name: sound}).returncode == 0

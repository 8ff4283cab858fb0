"""The fresh segment: vectors embedded since the current index was built are searched exactly
and merged with the index's results, with the real model code, real Annoy and a real database."""

import numpy as np
import pytest

from gallery import indexing, search
from gallery.catalogue.curation import image_delete, images_set_hidden
from gallery.engine import backend
from gallery.engine.fresh_segment import Fingerprint, FreshSegment, clear_fresh_cache, current_segment
from gallery.models import Image, IndexVersion
from tests.images import image_bytes
from tests.searching import by_image, by_text, similar

pytestmark = pytest.mark.django_db
API = "/api/v1"
MODEL = "tiny-test/random"


@pytest.fixture
def fresh_gallery(indexed_gallery, upload):
    """20 images in the built index and 5 embedded since (the fresh segment): 25 results, 2 pages."""
    fresh = [upload(100 + seed, title=f"Fresh {seed}")[0] for seed in range(5)]
    assert indexing.images_embed_pending().embedded == 5
    return indexed_gallery, list(Image.objects.filter(pk__in=[i.pk for i in fresh]).order_by("pk"))


def exact_ranking(vector, images):
    """The true ranking over the stored vectors of ``images``, best first."""
    rows = Image.objects.filter(pk__in=[i.pk for i in images])
    scored = [(row.pk, float(row.vector @ vector)) for row in rows]
    return sorted(scored, key=lambda pair: -pair[1])


def test_fresh_images_are_found_next_to_indexed_ones_in_one_ranking(index_engine, fresh_gallery):
    built, fresh = fresh_gallery
    # In the fresh segment on Annoy; upserted into the current version at once on Milvus.
    status = "indexed" if index_engine == "milvus" else "pending"
    assert set(Image.objects.filter(pk__in=[i.pk for i in fresh]).values_list("status", flat=True)) == {status}
    assert indexing.fresh_segment_size() == (0 if index_engine == "milvus" else 5)
    query = search.text_query("a red square")
    vector, _ = query.vector()
    hits = search.search(query)
    assert len(hits) == 25 and [hit.rank for hit in hits] == list(range(1, 26))
    truth = exact_ranking(vector, built + fresh)
    assert [hit.image.pk for hit in hits] == [pk for pk, _ in truth]
    assert [hit.score for hit in hits] == pytest.approx([score for _, score in truth], abs=1e-4)
    # A fresh image is its own nearest neighbour, found exactly.
    first = similar(fresh[2])[0]
    assert first.image.pk == fresh[2].pk and first.score == pytest.approx(1, abs=1e-5)


@pytest.mark.usefixtures("index_engine")
def test_hidden_and_deleted_fresh_images_never_appear(fresh_gallery, django_capture_on_commit_callbacks):
    built, fresh = fresh_gallery
    hidden, deleted = fresh[0], fresh[1]
    images_set_hidden(images=Image.objects.filter(pk__in=[hidden.pk, built[0].pk]), hidden=True)
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=Image.objects.get(pk=deleted.pk))
    for hits in (by_text("anything"), similar(fresh[3])):
        found = [hit.image.pk for hit in hits]
        assert not {hidden.pk, deleted.pk, built[0].pk} & set(found)
        assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert len(by_text("anything")) == 22
    images_set_hidden(images=Image.objects.filter(pk=hidden.pk), hidden=False)
    assert hidden.pk in [hit.image.pk for hit in by_text("anything")]


def test_pages_hold_together_when_an_image_moves_from_fresh_to_built_between_them(fresh_gallery):
    built, fresh = fresh_gallery
    query = search.text_query("a blue circle")
    first = search.paginate(search.search(query), 1)
    ranking_before = [(hit.image.pk, hit.score) for hit in search.search(query)]
    # A compaction between page 1 and page 2: the fresh rows are now in the built index.
    version = indexing.index_compact_if_due(scheduled=True)
    assert version.item_count == 25 and not Image.objects.filter(status="pending").exists()
    assert len(current_segment(MODEL)) == 0 and current_segment(MODEL).version == version.version
    second = search.paginate(search.search(query), 2)
    seen = [hit.image.pk for hit in first.object_list] + [hit.image.pk for hit in second.object_list]
    assert len(first.object_list) == 16 and len(second.object_list) == 9
    assert sorted(seen) == sorted(i.pk for i in built + fresh)  # every image once, none twice
    assert [hit.rank for hit in second.object_list] == list(range(17, 26))
    ranking_after = [(hit.image.pk, hit.score) for hit in search.search(query)]
    assert [pk for pk, _ in ranking_after] == [pk for pk, _ in ranking_before]
    assert [s for _, s in ranking_after] == pytest.approx([s for _, s in ranking_before], abs=1e-4)


def test_an_id_in_both_keeps_its_best_score():
    merged = search.merge_ranked([(1, 0.9), (2, 0.5), (3, 0.1)], [(2, 0.7), (4, 0.6), (1, 0.8)])
    assert merged == [(1, 0.9), (2, 0.7), (4, 0.6), (3, 0.1)]


def test_the_index_and_the_fresh_segment_come_from_one_query_and_agree(fresh_gallery, django_assert_num_queries):
    """Search reads the current version and the fresh segment's fingerprint with one statement:
    a version made current between two reads could leave the rows it took from the segment out
    of both (the index read before the publish, the segment after it)."""
    built, fresh = fresh_gallery
    before = IndexVersion.objects.get(is_current=True).version
    index, segment, _ = backend.search_view(MODEL)  # loads both
    with django_assert_num_queries(1):
        index, segment, _ = backend.search_view(MODEL)
    assert index.version == segment.version == before and len(segment) == 5
    assert index.query(fresh[4].vector, 1)[0][0] != fresh[4].pk  # not built in: the segment holds it
    published = indexing.index_publish()
    index, segment, _ = backend.search_view(MODEL)
    assert index.version == segment.version == published.version != before and len(segment) == 0
    assert index.query(fresh[4].vector, 1)[0][0] == fresh[4].pk
    hits = search.search(search.SearchQuery.similar(fresh[4]))
    assert len(hits) == 25 and hits[0].image.pk == fresh[4].pk


def test_before_any_index_the_fresh_segment_answers(upload, client):
    images = [upload(seed)[0] for seed in range(4)]
    assert client.get(f"{API}/search/", {"q": "cat"}).status_code == 409  # nothing embedded: not ready
    indexing.images_embed_pending()
    assert IndexVersion.objects.count() == 0
    hits = by_text("a cat")
    assert sorted(hit.image.pk for hit in hits) == sorted(i.pk for i in images)
    assert similar(images[1])[0].image.pk == images[1].pk
    body = client.get(f"{API}/search/", {"q": "a cat"}).json()
    assert [hit["image"]["id"] for hit in body["results"]] == [hit.image.pk for hit in hits]
    assert {hit["image"]["state"] for hit in body["results"]} == {"searchable"}
    page = client.get("/search/", {"q": "a cat"})
    assert page.status_code == 200
    assert all(f'href="/images/{image.pk}/"' in page.content.decode() for image in images)


def test_the_segment_is_loaded_once_per_change_and_shared_through_the_database(fresh_gallery, upload, django_assert_num_queries):
    built, fresh = fresh_gallery
    segment = current_segment(MODEL)
    assert sorted(segment.ids.tolist()) == [i.pk for i in fresh] and segment.vectors.shape == (5, 32)
    with django_assert_num_queries(1):  # the fingerprint only
        assert current_segment(MODEL) is segment
    # Another process (an empty cache) builds the same segment from the database.
    clear_fresh_cache()
    other = current_segment(MODEL)
    assert other is not segment and other.ids.tolist() == segment.ids.tolist()
    assert np.array_equal(other.vectors, segment.vectors)
    # A new embed run changes the fingerprint: reloaded once, with the new row.
    new = upload(300)[0]
    assert current_segment(MODEL) is other  # not embedded yet: nothing changed
    indexing.images_embed_pending()
    reloaded = current_segment(MODEL)
    assert reloaded is not other and new.pk in reloaded.ids.tolist() and len(reloaded) == 6
    # A deletion changes it too; rows of another model are never in it.
    Image.objects.filter(pk=fresh[0].pk).delete()
    assert fresh[0].pk not in current_segment(MODEL).ids.tolist()
    assert len(current_segment("another-model/weights")) == 0


def test_states_on_the_image_page_and_in_the_api(client, upload, django_capture_on_commit_callbacks):
    image = upload(7)[0]

    def state():
        page = client.get(f"/images/{image.pk}/").content.decode()
        api = client.get(f"{API}/images/{image.pk}/").json()
        return page, api["state"], api["status"]

    page, api_state, status = state()
    assert (api_state, status) == ("waiting", "pending") and 'data-state="waiting"' in page
    assert "searchable after the next index run" in page
    indexing.images_embed_pending()
    page, api_state, status = state()
    assert (api_state, status) == ("searchable", "pending") and 'data-state="searchable"' in page
    assert "found by search now; joins the built index at the next compaction" in page
    indexing.index_publish()
    page, api_state, status = state()
    assert (api_state, status) == ("indexed", "indexed") and 'data-state="indexed"' in page
    Image.objects.filter(pk=image.pk).update(status="failed", error="broken")
    assert state()[1:] == ("failed", "failed")


def test_the_status_line_counts_fresh_images_separately(client, fresh_gallery, upload):
    upload(400)
    text = client.get("/").content.decode()
    assert "25 images searchable (" in text and '<span id="fresh-count">5</span> of them fresh' in text
    assert ", 1 waiting" in text
    status = client.get(f"{API}/index/").json()
    assert (status["searchable"], status["fresh"], status["waiting"]) == (25, 5, 1)


def test_compaction_runs_hourly_or_when_the_segment_is_too_big(fresh_gallery, settings):
    built, fresh = fresh_gallery
    assert indexing.fresh_segment_size() == 5
    before = IndexVersion.objects.get(is_current=True)
    settings.FRESH_SEGMENT_MAX = 5
    assert indexing.index_compact_if_due(scheduled=False) is None  # 5 is not past 5
    assert IndexVersion.objects.get(is_current=True) == before and indexing.fresh_segment_size() == 5
    settings.FRESH_SEGMENT_MAX = 4
    version = indexing.index_compact_if_due(scheduled=False)
    assert version.item_count == 25 and indexing.fresh_segment_size() == 0
    assert set(Image.objects.values_list("status", flat=True)) == {"indexed"}
    # The hourly run publishes whatever changed, even with a small segment; nothing new: nothing.
    Image.objects.filter(pk=built[0].pk).delete()
    settings.FRESH_SEGMENT_MAX = 20_000
    assert indexing.index_compact_if_due(scheduled=False) is None
    assert indexing.index_compact_if_due(scheduled=True).item_count == 24
    assert indexing.index_compact_if_due(scheduled=True) is None


def test_the_indexing_runs_publish_step_builds_nothing_and_says_when_a_compaction_is_due(fresh_gallery, settings):
    """The DAG's publish step only decides (the compaction DAG builds), so a run started by
    uploads never takes a rebuild's minutes, whatever the gallery's size."""
    before = IndexVersion.objects.get(is_current=True)
    settings.FRESH_SEGMENT_MAX = 5
    assert indexing.index_publish_new(scheduled=False) == indexing.PublishStep(compaction_due=False)
    assert indexing.index_publish_new(scheduled=True) == indexing.PublishStep(compaction_due=True)
    settings.FRESH_SEGMENT_MAX = 4
    assert indexing.index_publish_new(scheduled=False) == indexing.PublishStep(compaction_due=True)
    assert list(IndexVersion.objects.all()) == [before] and indexing.fresh_segment_size() == 5  # nothing built

    version = indexing.index_compact(embed_report=indexing.EmbedReport(embedded=5, model_id=MODEL))
    assert (version.item_count, version.embedded_count, version.model) == (25, 5, MODEL)
    assert indexing.fresh_segment_size() == 0 and indexing.index_compact() is None  # nothing new since


def test_a_quick_run_finds_new_uploads_and_skips_compaction_without_building_the_model(fresh_gallery, upload):
    built, fresh = fresh_gallery
    new = [upload(300 + seed)[0] for seed in range(3)]
    Image.objects.filter(pk=built[0].pk).update(embedding_model="old-model/weights")  # needs re-embedding
    hourly = indexing.pending_chunks(chunk_size=2)  # this one loads the model to compare names
    assert hourly == [sorted([built[0].pk, new[0].pk]), sorted([new[1].pk, new[2].pk])]
    before = IndexVersion.objects.get(is_current=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(indexing.embedder, "embedder", lambda **kwargs: pytest.fail("the model was built"))
        assert indexing.pending_chunks(chunk_size=2, new_only=True) == [[new[0].pk, new[1].pk], [new[2].pk]]
        # Publish after a quick run: the embed tasks' reports name the model...
        chunks = [{"embedded": 3, "failed": 0, "seconds": 1.0, "model_id": MODEL}, indexing.EmbedReport().as_dict()]
        report = indexing.EmbedReport.total(chunks)
        assert (report.embedded, report.model_id) == (3, MODEL)
        assert indexing.index_compact_if_due(scheduled=False, embed_report=report) is None
        # ...and when nothing was embedded, the current version does.
        assert indexing.index_compact_if_due(scheduled=False, embed_report=indexing.EmbedReport.total([])) is None
        assert IndexVersion.objects.get(is_current=True) == before
        # The scheduled run publishes with the model its embed report names: none is built for it.
        published = indexing.index_compact_if_due(scheduled=True, embed_report=report)
    assert published.model == MODEL and IndexVersion.objects.get(is_current=True) == published


@pytest.mark.usefixtures("fresh_embedders")
def test_a_web_tier_on_another_runtime_finds_what_the_indexer_embedded(fresh_gallery, settings, stored_onnx_export):
    """The indexer embeds with torch, the web tier queries with ONNX (as compose.yaml may run
    them): the index answers both runtimes of one model, and so does the fresh segment."""
    built, fresh = fresh_gallery
    assert {image.embedding_model for image in fresh} == {"tiny-test/random"}
    settings.CLIP_RUNTIME = "onnx"
    first = by_image(image_bytes(102))[0]  # the fresh upload of seed 102, by its own picture
    assert first.image.pk == fresh[2].pk and first.score > 0.99
    assert len(search.search(search.text_query("a red square"))) == 25


def test_more_like_an_image_not_embedded_yet_says_so_without_loading_the_model(indexed_gallery, upload, monkeypatch):
    """Its vector space is its stored vector's: before there is one, nothing needs the model."""
    from gallery.engine import embedder
    from gallery.errors import NotReady

    image = upload(77)[0]  # uploaded, not embedded
    monkeypatch.setattr(embedder, "embedder", lambda **kwargs: pytest.fail("the model was loaded"))
    with pytest.raises(NotReady, match="not embedded yet"):
        search.search(search.SearchQuery.similar(image))


def test_a_repeated_search_asks_the_index_once_per_snapshot(index_engine, fresh_gallery, upload, monkeypatch):
    """Paging through results and popular searches ask again: within one snapshot (the index
    version and the fresh segment) the index is asked once; a newly embedded row or a publish
    is a new snapshot, seen at once, and hiding is checked on every search. A live engine
    (Milvus) has no snapshot to go by: asked every time."""
    built, fresh = fresh_gallery
    reader = type(backend.current_reader())
    asked, real = [], reader.query
    monkeypatch.setattr(reader, "query", lambda self, *args, **kwargs: asked.append(1) or real(self, *args, **kwargs))
    judged, judge = [], search.relevance.relevant_prefix
    monkeypatch.setattr(search.relevance, "relevant_prefix", lambda *args, **kwargs: judged.append(1) or judge(*args, **kwargs))
    live = index_engine == "milvus"
    ranked = [hit.image.pk for hit in by_text("a red square")]
    assert len(ranked) == 25 and len(asked) == 1
    assert [hit.image.pk for hit in by_text("a red square")] == ranked and len(asked) == (2 if live else 1)
    assert [hit.image.pk for hit in by_text("a blue circle")] != ranked and len(asked) == (3 if live else 2)
    images_set_hidden(images=Image.objects.filter(pk=ranked[0]), hidden=True)
    assert [hit.image.pk for hit in by_text("a red square")] == ranked[1:] and len(asked) == (4 if live else 2)
    # Which results are relevant is judged on every search (the gallery's size and sample change).
    assert len(judged) == 4
    new = upload(300, title="Newest")[0]
    assert indexing.images_embed_pending().embedded == 1
    assert new.pk in [hit.image.pk for hit in by_text("a red square")]
    asked.clear()
    indexing.index_publish(force=True)
    assert [hit.image.pk for hit in by_text("a red square")] == [hit.image.pk for hit in by_text("a red square")]
    assert len(asked) == (2 if live else 1)


def test_only_fresh_rows_as_near_as_the_indexs_kth_hit_are_merged_and_the_ranking_is_the_same():
    """The segment returns the rows scoring at least the index's k-th score, best first: the
    others cannot be among the k best, and the merged ranking is the one merging them all gives."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    segment = FreshSegment(Fingerprint(MODEL, 300, None, 300, None, None, None), ids=np.arange(1000, 1300), vectors=vectors)
    query = vectors[7]
    built = [(n, 0.9 - n / 100) for n in range(10)]  # the index's 10 best, its 10th at 0.81
    every = segment.query(query, 10)
    near = segment.query(query, 10, at_least=built[-1][1])
    assert near == [(pk, score) for pk, score in every if score >= built[-1][1]] and near[0] == (1007, pytest.approx(1.0))
    assert len(near) < len(every) == 10
    assert search.merge_ranked(built, near)[:10] == search.merge_ranked(built, every)[:10]

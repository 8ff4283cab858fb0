"""Upload -> pending -> embed -> build -> publish -> search, with the real model code, real
Annoy and real files."""

import io
import os
import shutil

import numpy as np
import pytest
from django.core.files.storage import default_storage

from gallery import indexing, search
from gallery.catalogue.curation import image_delete, images_reembed, images_set_hidden
from gallery.engine.index_cache import current_index
from gallery.errors import NotReady, StorageUnavailable
from gallery.models import Image, IndexVersion
from tests.images import image_bytes
from tests.searching import by_image, by_text, similar

pytestmark = pytest.mark.django_db


def test_uploaded_images_become_searchable(upload):
    images = [upload(seed)[0] for seed in range(5)]
    assert set(Image.objects.values_list("status", flat=True)) == {"pending"}

    report = indexing.images_embed_pending()
    assert (report.embedded, report.failed) == (5, 0)
    row = Image.objects.get(pk=images[0].pk)
    assert row.status == "pending" and row.embedding_model == "tiny-test/random" and row.embedded_at
    assert row.vector.shape == (32,) and np.linalg.norm(row.vector) == pytest.approx(1, abs=1e-5)

    version = indexing.index_publish(embed_report=report)
    assert version.is_current and version.item_count == 5 and version.embedded_count == 5
    assert set(Image.objects.values_list("status", flat=True)) == {"indexed"}
    for name in ("index.ann", "ids.npy", "manifest.json"):
        assert default_storage.exists(f"indexes/{version.version}/{name}")

    # An image is its own nearest neighbour, by stored vector and by the uploaded file.
    for image in images:
        assert similar(Image.objects.get(pk=image.pk))[0].image.pk == image.pk
    hits = by_image(io.BytesIO(image_bytes(3)))
    assert hits[0].image.pk == images[3].pk and hits[0].score == pytest.approx(1, abs=1e-4)


def test_text_search_returns_every_image_ranked(indexed_gallery):
    hits = by_text("a red square")
    assert len(hits) == 20
    assert [hit.rank for hit in hits] == list(range(1, 21))
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert {hit.image.pk for hit in hits} == {image.pk for image in indexed_gallery}


def test_hidden_and_deleted_images_never_appear(indexed_gallery, django_capture_on_commit_callbacks):
    hidden, deleted = indexed_gallery[3], indexed_gallery[4]
    images_set_hidden(images=Image.objects.filter(pk=hidden.pk), hidden=True)
    with django_capture_on_commit_callbacks(execute=True):
        image_delete(image=Image.objects.get(pk=deleted.pk))
    # No rebuild: both are dropped at query time.
    for hits in (
        by_text("anything"),
        by_image(io.BytesIO(image_bytes(3))),
        similar(indexed_gallery[0]),
    ):
        found = [hit.image.pk for hit in hits]
        assert hidden.pk not in found and deleted.pk not in found
        assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    images_set_hidden(images=Image.objects.filter(pk=hidden.pk), hidden=False)
    assert hidden.pk in [hit.image.pk for hit in by_text("anything")]


def test_a_broken_image_fails_alone(upload):
    good, _ = upload(1)
    broken, _ = upload(2)
    default_storage.delete(broken.file.name)
    default_storage.save(broken.file.name, io.BytesIO(b"corrupted on disk"))
    report = indexing.images_embed_pending()
    assert (report.embedded, report.failed) == (1, 1)
    broken.refresh_from_db()
    assert broken.status == "failed" and "cannot identify image" in broken.error
    version = indexing.index_publish()
    assert version.item_count == 1
    assert Image.objects.get(pk=good.pk).status == "indexed"
    # Re-embedding puts it back in the queue.
    images_reembed(images=Image.objects.filter(pk=broken.pk))
    assert Image.objects.get(pk=broken.pk).status == "pending"


def test_nothing_new_means_no_rebuild(indexed_gallery):
    assert indexing.index_refresh().published is None
    assert IndexVersion.objects.count() == 1
    # A deletion changes what the index should hold.
    Image.objects.filter(pk=indexed_gallery[0].pk).delete()
    assert indexing.index_refresh().published.item_count == 19


def test_search_before_any_index_says_so(upload):
    upload(1)
    with pytest.raises(NotReady, match="no index has been built"):
        by_text("a cat")


def test_a_running_process_picks_up_a_new_version(indexed_gallery, upload, settings):
    first = current_index()
    assert first.version == IndexVersion.objects.get(is_current=True).version
    assert current_index() is first  # loaded once
    new, _ = upload(99)
    indexing.index_refresh()
    second = current_index()
    assert second.version != first.version and len(second) == 21
    assert similar(Image.objects.get(pk=new.pk))[0].image.pk == new.pk


def test_a_process_with_only_storage_and_database_loads_the_index(indexed_gallery, settings):
    """The local cache is only a cache: the published version comes back from storage."""
    version = IndexVersion.objects.get(is_current=True).version
    shutil.rmtree(settings.INDEX_CACHE_DIR)
    from gallery.engine.index_cache import clear_index_cache

    clear_index_cache()
    assert current_index().version == version
    assert (settings.INDEX_CACHE_DIR / "indexes" / version / "index.ann").exists()
    assert similar(indexed_gallery[5])[0].image.pk == indexed_gallery[5].pk


def test_an_index_of_another_model_is_refused_clearly(indexed_gallery, settings):
    settings.CLIP_MODEL_CONFIG_DIR = settings.CLIP_MODEL_CONFIG_DIR  # same configs
    settings.CLIP_MODEL = "tiny-test-other"
    import json
    from pathlib import Path

    config_dir = Path(settings.INDEX_CACHE_DIR).parent / "configs"
    config_dir.mkdir()
    config = json.loads((Path(__file__).parent / "clip_configs" / "tiny-test.json").read_text())
    (config_dir / "tiny-test-other.json").write_text(json.dumps(config))
    settings.CLIP_MODEL_CONFIG_DIR = str(config_dir)
    with pytest.raises(NotReady, match="holds vectors of tiny-test/random.*Rebuild the index"):
        by_text("a cat")
    # The next run re-embeds everything with the new model and publishes a matching index.
    report = indexing.index_refresh()
    assert report.embed.embedded == 20 and report.published.model == "tiny-test-other/random"
    assert len(by_text("a cat")) == 20


def test_old_versions_are_pruned_after_a_grace_period(indexed_gallery, upload, settings):
    settings.INDEX_KEEP_VERSIONS = 2
    for seed in (50, 51, 52):
        upload(seed)
        indexing.index_refresh()
    assert IndexVersion.objects.count() == 4  # within the grace period: nothing deleted yet
    settings.INDEX_PRUNE_GRACE_SECONDS = 0
    assert len(indexing.index_prune()) == 2
    versions = list(IndexVersion.objects.order_by("-created_at", "-pk"))
    assert len(versions) == 2 and versions[0].is_current
    assert IndexVersion.objects.filter(is_current=True).count() == 1
    with_files = [name for name in default_storage.listdir("indexes")[0] if default_storage.listdir(f"indexes/{name}")[1]]
    assert sorted(with_files) == sorted(v.version for v in versions)
    assert sorted(p.name for p in (settings.INDEX_CACHE_DIR / "indexes").iterdir() if not p.name.startswith(".")) == sorted(
        v.version for v in versions
    )


@pytest.mark.parametrize("text, says", [("", "Type what"), ("   ", "Type what"), ("x" * 301, "too long")])
def test_bad_text_queries(indexed_gallery, text, says):
    with pytest.raises(search.BadQuery, match=says):
        by_text(text)


def test_a_bad_query_image_is_refused(indexed_gallery):
    with pytest.raises(search.BadQuery, match="not an image"):
        by_image(io.BytesIO(b"plain text"))


def test_processes_on_one_host_share_one_download(indexed_gallery, settings, monkeypatch):
    """Several workers swapping to a new version at once fetch it from storage once."""
    from concurrent.futures import ThreadPoolExecutor

    from django.core.files.storage import storages

    from gallery.engine.artifacts import local_copy
    from indexer.index import FILES, REDUCED_FILES

    version = IndexVersion.objects.get(is_current=True)
    shutil.rmtree(settings.INDEX_CACHE_DIR / "indexes" / version.version)
    storage, opened = storages["default"], []
    real_open = storage.open
    monkeypatch.setattr(storage, "open", lambda name, mode="rb": opened.append(name) or real_open(name, mode))
    target = settings.INDEX_CACHE_DIR / "indexes" / version.version
    with ThreadPoolExecutor(4) as pool:
        copies = list(pool.map(lambda _: local_copy(version.storage_prefix, FILES, target, optional=REDUCED_FILES), range(4)))
    # 20 images: a forest over the whole vectors, without the files of one over principal components.
    whole = sorted(set(FILES) - set(REDUCED_FILES))
    assert copies == [target] * 4 and sorted(name.rsplit("/", 1)[1] for name in opened) == whole
    assert sorted(p.name for p in target.iterdir()) == whole


def _huge_page_mapped_mb(path) -> int:
    """How much of ``path`` a process that maps it whole gets in 2 MB pages (FilePmdMapped)."""
    import mmap

    from benchmarks.report import mapped_kb

    real = os.path.realpath(path)
    with open(real, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
        try:
            return mapped_kb("self", real).get("FilePmdMapped", 0) >> 10
        finally:
            mapped.close()


def test_a_host_copy_is_mapped_in_huge_pages_where_the_kernel_can(tmp_path):
    """A host's copy of an artifact is written in pieces of COPY_CHUNK, so that where the page
    cache holds large folios (ext4 and XFS on recent kernels) the processes that map an index
    map it in 2 MB pages (a query after the text encoder: 5.8-7.5 -> 3.8-4.4 ms at 1M, Intel Xeon,
    2 cores, avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16; docs/performance.md section 29). Written
    in pieces of 1 MB, as before, none of it was."""
    from django.core.files.base import ContentFile

    from gallery.engine.artifacts import local_copy

    probe = tmp_path / "probe.bin"  # can this kernel and file system do it at all?
    with open(probe, "wb") as handle:
        for _ in range(4):
            handle.write(os.urandom(8 << 20))
    if _huge_page_mapped_mb(probe) == 0:
        pytest.skip("this kernel or file system maps no file in 2 MB pages")
    default_storage.save("artifact/blob.bin", ContentFile(os.urandom(32 << 20)))  # this test's storage
    copy = local_copy("artifact", ("blob.bin",), tmp_path / "copy") / "blob.bin"
    assert copy.stat().st_size == 32 << 20
    assert _huge_page_mapped_mb(copy) >= 24


def test_a_damaged_local_copy_is_fetched_again(indexed_gallery, settings):
    from gallery.engine.index_cache import clear_index_cache

    version = IndexVersion.objects.get(is_current=True).version
    with open(settings.INDEX_CACHE_DIR / "indexes" / version / "index.ann", "r+b") as handle:
        handle.seek(64)
        handle.write(b"bit rot")
    clear_index_cache()
    assert current_index().version == version  # re-downloaded from storage and verified
    assert similar(indexed_gallery[3])[0].image.pk == indexed_gallery[3].pk


def test_a_failed_publish_leaves_no_local_build_behind(upload, settings, monkeypatch):
    from django.core.files.storage import storages

    upload(1)
    indexing.images_embed_pending()
    storage = storages["default"]

    def refuse(name, content, **kwargs):
        raise OSError("storage refused")

    monkeypatch.setattr(storage, "save", refuse)
    with pytest.raises(StorageUnavailable, match="index could not be stored .storage refused"):  # the gallery's own
        indexing.index_publish()
    assert IndexVersion.objects.count() == 0
    leftovers = [p.name for p in (settings.INDEX_CACHE_DIR / "indexes").glob("*")]
    assert leftovers == [] and list((settings.INDEX_CACHE_DIR / "builds").iterdir()) == []

"""The recall gate: a new build becomes current only if sampled vectors find themselves and the
curators' golden queries do no worse; otherwise it is recorded, discarded, and the old version
keeps serving. A forced publish overrides the gate and says so."""

import io
import logging

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.utils import timezone

from gallery import indexing
from gallery.catalogue import curation
from gallery.engine import embedder
from gallery.engine.backend import current_reader
from gallery.engine.index_cache import current_index
from gallery.indexing import recall_gate
from gallery.models import GoldenQuery, Image, IndexVersion, RefusedBuild
from tests.conftest import stored_files
from tests.searching import by_text

pytestmark = pytest.mark.django_db
GOLDEN = "a red bicycle by the sea"


@pytest.fixture
def gate_log(caplog):
    caplog.set_level(logging.INFO, logger="gallery")
    return caplog


@pytest.fixture
def golden(indexed_gallery):
    """A golden query whose expected image is the current version's best match (k=3)."""
    best = current_index().query(embedder.embed_text(GOLDEN), 1)[0][0]
    query = GoldenQuery.objects.create(text=GOLDEN, k=3)
    query.expected.set([best])
    return Image.objects.get(pk=best)


def move_away(image):
    """Re-embed ``image`` with a vector pointing away from the golden query: a build holding it
    no longer finds it for that query (what a worse model or a broken embed run would do)."""
    vector = -embedder.embed_text(GOLDEN)
    Image.objects.filter(pk=image.pk).update(
        embedding=vector.astype(np.float32).tobytes(), status=Image.Status.PENDING, embedded_at=timezone.now()
    )


def index_files(version):
    return [name for name in stored_files() if name.startswith(f"indexes/{version}/")]


def test_a_build_that_loses_a_golden_image_is_refused_and_the_old_version_serves(golden, gate_log, settings, admin_client):
    old = IndexVersion.objects.get(is_current=True)
    move_away(golden)

    assert indexing.index_publish() is None

    refused = RefusedBuild.objects.get()
    assert IndexVersion.objects.get(is_current=True) == old and IndexVersion.objects.count() == 1
    assert not IndexVersion.objects.filter(version=refused.version).exists()
    assert (refused.golden_before, refused.golden_after, refused.current_version) == (1.0, 0.0, old.version)
    assert refused.structural_recall == 1.0 and refused.sample_size == 20
    assert "Golden queries find fewer expected images" in refused.reason and GOLDEN in refused.reason
    # Nothing stored, nothing left on this host's disk.
    assert index_files(refused.version) == [] and index_files(old.version) != []
    assert list((settings.INDEX_CACHE_DIR / "builds").iterdir()) == []
    assert not (settings.INDEX_CACHE_DIR / "indexes" / refused.version).exists()
    # Search still answers from the old version, and the image stays pending (fresh segment).
    assert current_index().version == old.version and len(by_text(GOLDEN)) == 20
    assert Image.objects.get(pk=golden.pk).status == "pending"
    # The reason is in the log and in the admin's index-version list.
    warnings = [r.getMessage() for r in gate_log.records if r.levelno == logging.WARNING]
    assert any(f"recall gate refused build {refused.version}" in m and old.version in m for m in warnings)
    page = admin_client.get("/admin/gallery/indexversion/").content.decode()
    assert f"Build {refused.version} was refused by the recall gate" in page and "Golden queries find fewer" in page
    assert refused.version in admin_client.get("/admin/gallery/refusedbuild/").content.decode()


def test_a_build_missing_a_golden_image_is_refused(golden):
    old = IndexVersion.objects.get(is_current=True)
    curation.images_reembed(images=Image.objects.filter(pk=golden.pk))  # its vector is gone from the next build
    assert indexing.index_publish() is None
    assert IndexVersion.objects.current() == old and "fewer expected images" in RefusedBuild.objects.get().reason


def test_a_build_that_does_as_well_publishes(golden, upload, gate_log):
    old = IndexVersion.objects.get(is_current=True)
    upload(77)
    report = indexing.index_refresh()
    assert report.published is not None and report.published.version != old.version
    assert IndexVersion.objects.current().item_count == 21 and not RefusedBuild.objects.exists()
    assert current_index().version == report.published.version
    assert any("recall gate passed" in r.getMessage() and "golden 1.00 (current 1.00)" in r.getMessage() for r in gate_log.records)


def test_low_structural_recall_refuses_the_build(indexed_gallery, upload, settings):
    settings.RECALL_GATE_MIN_STRUCTURAL = 1.01  # no build can reach it
    old = IndexVersion.objects.current()
    upload(77)
    assert indexing.index_refresh().published is None
    refused = RefusedBuild.objects.get()
    assert "21 of 21 sampled images" in refused.reason and "structural recall 1.000" in refused.reason
    assert refused.golden_before is None and refused.golden_after is None  # no golden queries
    assert IndexVersion.objects.current() == old and current_index().version == old.version


def test_the_very_first_build_is_checked_too(upload, settings):
    settings.RECALL_GATE_MIN_STRUCTURAL = 1.01
    upload(1)
    assert indexing.index_refresh().published is None
    assert IndexVersion.objects.count() == 0 and RefusedBuild.objects.get().current_version == ""


def test_force_overrides_the_gate_with_a_log_line(golden, gate_log):
    move_away(golden)
    out = io.StringIO()
    call_command("build_index", "--force", stdout=out)
    current = IndexVersion.objects.current()
    assert f"Published index {current.version}" in out.getvalue() and current.item_count == 20
    assert not RefusedBuild.objects.exists()
    overridden = [r.getMessage() for r in gate_log.records if "recall gate overridden" in r.getMessage()]
    assert overridden == [f"recall gate overridden: build {current.version} is published without checking recall (forced)"]


def test_index_publish_force_skips_the_structural_check(indexed_gallery, settings, gate_log):
    settings.RECALL_GATE_MIN_STRUCTURAL = 1.01
    old = IndexVersion.objects.current()
    version = indexing.index_publish(force=True)
    assert version is not None and version != old and IndexVersion.objects.current() == version
    assert any("recall gate overridden" in r.getMessage() for r in gate_log.records)


def test_the_gate_can_be_turned_off(indexed_gallery, upload, settings):
    settings.RECALL_GATE = False
    settings.RECALL_GATE_MIN_STRUCTURAL = 1.01
    upload(77)
    assert indexing.index_refresh().published is not None and not RefusedBuild.objects.exists()


def test_check_build_samples_a_fixed_number_of_vectors(golden, settings):
    settings.RECALL_GATE_SAMPLE = 7
    model_id = embedder.embedder().model_id
    build = indexing.index_build(model_id)
    try:
        first = recall_gate.check_build(build, current_reader())
        again = recall_gate.check_build(build, current_reader())
        alone = recall_gate.check_build(build, None)  # the first publish: nothing to compare with
    finally:
        build.discard()
    assert first == again
    assert (first.passed, first.structural_recall, first.sample_size) == (True, 1.0, 7)
    assert (first.golden_before, first.golden_after, first.reason) == (1.0, 1.0, "")
    assert (alone.passed, alone.golden_before, alone.golden_after) == (True, None, 1.0)


def test_curators_keep_golden_queries_in_the_admin(client, indexed_gallery):
    curator = User.objects.create_user("curator", password="pw-curator-123", is_staff=True)
    curator.user_permissions.add(Permission.objects.get(codename="change_image"))
    client.force_login(curator)
    chosen = [indexed_gallery[2].pk, indexed_gallery[3].pk]
    response = client.post("/admin/gallery/goldenquery/add/", {"text": GOLDEN, "k": "5", "expected": chosen})
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = GoldenQuery.objects.get()
    assert (saved.text, saved.k, sorted(saved.expected.values_list("pk", flat=True)), saved.created_by) == (GOLDEN, 5, chosen, curator)
    assert GOLDEN in client.get("/admin/gallery/goldenquery/").content.decode()
    other = User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client.force_login(other)
    assert client.get("/admin/gallery/goldenquery/").status_code == 403

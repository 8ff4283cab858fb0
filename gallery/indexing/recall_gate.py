"""The recall gate: a newly built index becomes current only if it finds what it should.

Two checks on the build, while it is complete but not current (``gallery.engine.backend.IndexBuild``: an
Annoy version on this host's disk, or a Milvus collection no alias names yet):

- structural recall: a sample of the stored vectors it holds (``RECALL_GATE_SAMPLE``, at most
  1000 by default, drawn with a fixed seed so a rerun checks the same rows) must each find their
  own image in the build's top 10; the share that does must reach ``RECALL_GATE_MIN_STRUCTURAL``
  (0.99). A broken or badly tuned build (too few trees, a truncated file, vectors of the wrong
  rows) fails here whatever the content.
- golden queries: the queries curators keep in the admin (:class:`GoldenQuery`, each with the
  images it should find within its top ``k``) must do at least as well on the build as on the
  current version. The score is the sum over queries of the share of expected images found.
  It is compared only where the current version holds vectors of the same model (after a model
  change the old index cannot answer the new model's text vectors).

A refused build is recorded (:class:`RefusedBuild`, shown in the admin's index-version list),
logged, and discarded (its files or its collection): the current version keeps serving. A forced
publish (``build_index --force``, ``index_publish(force=True)``) skips the gate, saying so in
the log. ``RECALL_GATE=0`` turns it off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from gallery.catalogue.sampling import pk_among
from gallery.engine import embedder
from gallery.engine.backend import current_reader
from gallery.errors import NotReady
from gallery.models import GoldenQuery, Image, IndexVersion, RefusedBuild, decode_vector
from indexer.backends import IndexReader
from indexer.index import IndexMismatch

logger = logging.getLogger(__name__)

SELF_K = 10  # a sampled vector must find its own image among this many
SEED = 20261124  # the sample is the same on every run over the same rows


@dataclass(frozen=True)
class GateReport:
    passed: bool
    structural_recall: float
    golden_before: float | None  # None: no golden queries, or no comparable current version
    golden_after: float | None
    reason: str = ""  # why it failed; empty when it passed
    sample_size: int = 0

    def describe(self) -> str:
        golden = (
            "no golden comparison"
            if self.golden_after is None
            else f"golden {self.golden_after:.2f} (current {'-' if self.golden_before is None else f'{self.golden_before:.2f}'})"
        )
        return f"structural recall {self.structural_recall:.3f} over {self.sample_size} vectors, {golden}"


def admit(build, *, force: bool = False) -> bool:
    """Whether ``build`` (an ``gallery.engine.backend.IndexBuild``) may be stored and made current. A refused
    build is recorded, logged and discarded here."""
    version = build.version
    if not settings.RECALL_GATE:
        return True
    if force:
        logger.warning("recall gate overridden: build %s is published without checking recall (forced)", version)
        return True
    try:
        # The serving version is loaded (from this host's cache or storage) only to compare with.
        try:
            current = current_reader() if GoldenQuery.objects.exists() else None
        except NotReady:  # the serving version is in the engine configured before: no comparison
            current = None
        report = check_build(build, current)
    except BaseException:
        build.discard()  # the publish fails (and is retried); no build is left on disk
        raise
    if report.passed:
        logger.info("recall gate passed for build %s: %s", version, report.describe())
        return True
    serving = IndexVersion.objects.current()
    RefusedBuild.objects.create(
        version=version,
        model=build.info.model,
        item_count=build.info.item_count,
        snapshot_at=build.snapshot_at,
        structural_recall=report.structural_recall,
        sample_size=report.sample_size,
        golden_before=report.golden_before,
        golden_after=report.golden_after,
        reason=report.reason,
        current_version=serving.version if serving else "",
    )
    logger.warning(
        "recall gate refused build %s: %s Version %s keeps serving.", version, report.reason, serving or "(none)"
    )
    build.discard()
    return False


def check_build(build, current: IndexReader | None) -> GateReport:
    """Measure ``build`` against the thresholds and against ``current`` (a reader of the
    serving version, or ``None``)."""
    index = build.reader()
    try:
        found, sampled = structural_recall(index, ids=build.ids, snapshot_at=build.snapshot_at)
        golden = golden_scores(index, current)
    finally:
        index.close()
    recall = found / sampled if sampled else 1.0
    reasons = []
    if recall < settings.RECALL_GATE_MIN_STRUCTURAL:
        reasons.append(
            f"Only {found} of {sampled} sampled images find themselves in the top {SELF_K} "
            f"(structural recall {recall:.3f}, RECALL_GATE_MIN_STRUCTURAL {settings.RECALL_GATE_MIN_STRUCTURAL})."
        )
    if golden.before is not None and golden.after is not None and golden.after < golden.before - 1e-9:
        reasons.append(
            f"Golden queries find fewer expected images: {golden.after:.2f} against {golden.before:.2f} "
            f"on the current version ({'; '.join(golden.worse[:5])})."
        )
    return GateReport(
        passed=not reasons,
        structural_recall=recall,
        golden_before=golden.before,
        golden_after=golden.after,
        reason=" ".join(reasons),
        sample_size=sampled,
    )


def structural_recall(index: IndexReader, *, ids: np.ndarray, snapshot_at) -> tuple[int, int]:
    """(found, sampled): how many sampled stored vectors (of ``ids``, the rows the build holds)
    find their own image in the top 10."""
    ids = np.asarray(ids)
    size = min(settings.RECALL_GATE_SAMPLE, len(ids))
    if not size:
        return 0, 0
    sample = np.random.default_rng(SEED).choice(ids, size=size, replace=False).tolist()
    found = sampled = 0
    # The vector the build read: rows re-embedded since then are left out of the sample.
    rows = Image.objects.filter(pk_among(sample), embedded_at__lte=snapshot_at).values_list("pk", "embedding")
    for pk, blob in rows.iterator(chunk_size=500):
        if blob is None:
            continue
        # Hidden rows too: the gate measures the build, not what a visitor may see.
        top = index.query(decode_vector(blob), SELF_K, only_visible=False)
        sampled += 1
        # More than ten images with exactly this vector (the same picture saved differently)
        # cannot all be in a top 10: a full top 10 of exact ties counts as found.
        if pk in {hit for hit, _ in top} or (len(top) == SELF_K and top[-1][1] >= 1 - 1e-5):
            found += 1
    return found, sampled


@dataclass
class GoldenScores:
    before: float | None = None  # the current version's; None where it cannot be compared
    after: float | None = None  # the build's; None without golden queries
    worse: list[str] = field(default_factory=list)  # the queries that lost images, for people


def golden_scores(index: IndexReader, current: IndexReader | None) -> GoldenScores:
    """Each golden query's share of expected images found in its top ``k``, summed."""
    goldens = [(golden, {image.pk for image in golden.expected.all()}) for golden in GoldenQuery.objects.prefetch_related("expected")]
    goldens = [(golden, expected) for golden, expected in goldens if expected]
    if not goldens:
        return GoldenScores()
    if current is not None:
        try:
            current.info.check_model(index.info.model)
        except IndexMismatch:
            logger.info("the current index holds another model's vectors: golden queries are not compared")
            current = None
    scores = GoldenScores(before=0.0 if current is not None else None, after=0.0)
    for golden, expected in goldens:
        vector = embedder.embed_text(golden.text)
        after = _found_share(index, vector, expected, golden.k)
        scores.after += after
        if current is not None:
            before = _found_share(current, vector, expected, golden.k)
            scores.before += before
            if after < before:
                scores.worse.append(f"“{golden.text}” {after:.0%} against {before:.0%}")
    return scores


def _found_share(index: IndexReader, vector: np.ndarray, expected: set[int], k: int) -> float:
    top = {pk for pk, _ in index.query(vector, k, only_visible=False)}
    return len(expected & top) / len(expected)

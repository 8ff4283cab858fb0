"""Does search find the right photo for a fitting description? Only real weights can say.

Runs when CLIP_PRETRAINED names real weights (a checkpoint file, or a tag on a machine that can
download it), with CLIP_MODEL its architecture; skipped otherwise.
"""

import io
import os

import pytest

from gallery.catalogue.samples import available_samples
from gallery.catalogue.uploads import image_create
from gallery.indexing import index_refresh
from indexer.embedding import RANDOM
from tests.searching import by_text

REAL_WEIGHTS = os.environ.get("CLIP_PRETRAINED", RANDOM)
# The unmistakable ones must be first; the whole set must be mostly right.
MUST_BE_FIRST = {"chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "flower.jpg", "china.jpg"}

pytestmark = [
    pytest.mark.real_weights,
    pytest.mark.django_db,
    pytest.mark.skipif(
        REAL_WEIGHTS == RANDOM,
        reason="real CLIP weights are not configured: set CLIP_PRETRAINED=/path/to/checkpoint (and CLIP_MODEL) to run",
    ),
]


@pytest.fixture
def real_model(settings, fresh_embedders):
    settings.CLIP_MODEL = os.environ.get("CLIP_MODEL", "ViT-B-32")
    settings.CLIP_PRETRAINED = REAL_WEIGHTS
    settings.CLIP_MODEL_CONFIG_DIR = os.environ.get("CLIP_MODEL_CONFIG_DIR", "")


def add_samples():
    samples = available_samples()
    for sample in samples:
        with sample.path.open("rb") as handle:
            image_create(file=handle, filename=sample.filename, title=sample.title)
    return samples


def test_sample_photos_are_found_by_fitting_text(real_model):
    samples = add_samples()
    index_refresh()
    # CLIP alone: the hybrid default would let the samples' titles find them by their words.
    firsts = {sample.filename: by_text(sample.query, ranking="clip")[0].image.title for sample in samples}
    wrong = {name: found for name, found in firsts.items() if found != next(s.title for s in samples if s.filename == name)}
    assert not (set(wrong) & MUST_BE_FIRST), f"wrong top-1: {wrong}"
    assert len(wrong) <= len(samples) // 5, f"wrong top-1: {wrong}"


def test_relevant_only_keeps_the_fitting_photo_and_drops_the_rest(real_model):
    """The query-adaptive cut (gallery.search.relevance) with real weights: among the samples and 240
    generated pictures (noise and shapes, which no description fits), each unmistakable sample's
    query keeps its photo and drops nearly everything else; a query nothing fits keeps little."""
    from tests.images import image_bytes

    samples = add_samples()
    for seed in range(240):
        image_create(file=io.BytesIO(image_bytes(seed, size=(256, 192))), filename=f"generated-{seed}.jpg")
    index_refresh()
    gallery_size = len(samples) + 240
    for sample in samples:
        if sample.filename not in MUST_BE_FIRST:
            continue
        results = by_text(sample.query, ranking="clip", relevant=True)
        assert results.relevant is not None, "the gallery is large enough to judge"
        kept = [hit.image.title for hit in results]
        assert sample.title in kept, f"{sample.query!r}: its photo was cut; kept {kept[:10]}"
        assert len(kept) <= gallery_size // 10, f"{sample.query!r}: {len(kept)} of {gallery_size} kept"

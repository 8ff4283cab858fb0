"""Concurrent text queries share forward passes (indexer.embedding.batching)."""

import threading
import time

import numpy as np
import pytest

from indexer.embedding import get_embedder
from indexer.embedding.batching import TextBatcher
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("fresh_embedders")


def wait_until(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_queries_arriving_during_a_pass_share_the_next_one():
    model = get_embedder(TINY)
    release, passes = threading.Event(), []

    def encode(texts):
        passes.append(list(texts))
        if len(passes) == 1:
            release.wait(10)  # the first pass is slow: the others queue behind it
        return model.encode_texts(texts)

    batcher = TextBatcher(encode)
    texts = ["a red square", "a blue circle", "a green triangle", "a cat"]
    results = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, batcher.encode(t))) for t in texts]
    threads[0].start()
    wait_until(lambda: len(passes) == 1)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(batcher._waiting) == 3)
    release.set()
    for thread in threads:
        thread.join(10)
    assert passes == [texts[:1], texts[1:]]  # alone at once, then the three together
    for text in texts:
        np.testing.assert_allclose(results[text], model.encode_texts([text])[0], atol=1e-5)


def test_an_error_reaches_every_caller_of_the_pass():
    def encode(texts):
        raise RuntimeError("model gone")

    batcher = TextBatcher(encode)
    with pytest.raises(RuntimeError, match="model gone"):
        batcher.encode("a cat")
    assert batcher._busy is False  # the next query gets a pass of its own


def test_at_most_max_batch_per_pass_and_everyone_answered():
    model = get_embedder(TINY)
    sizes = []

    def encode(texts):
        sizes.append(len(texts))
        time.sleep(0.02)
        return model.encode_texts(texts)

    batcher = TextBatcher(encode, max_batch=3, wait_s=0.005)
    texts = [f"photo number {n}" for n in range(10)]
    out = {}
    threads = [threading.Thread(target=lambda t=t: out.__setitem__(t, batcher.encode(t))) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(out) == sorted(texts) and sum(sizes) == 10 and max(sizes) <= 3
    np.testing.assert_allclose(out["photo number 7"], model.encode_texts(["photo number 7"])[0], atol=1e-5)

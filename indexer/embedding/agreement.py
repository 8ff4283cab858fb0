"""The rule for swapping one runtime's vectors for another's (README, "Fast CPU inference"):
every vector within cosine 0.99 of torch's, and searches sharing at least 90% of their top 5."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_COSINE = 0.99
MIN_TOP_K = 0.9
K = 5


@dataclass(frozen=True)
class Agreement:
    min_cosine: float
    mean_cosine: float
    top_k: float  # mean share of the top-K results both find

    @property
    def passes(self) -> bool:
        return self.min_cosine >= MIN_COSINE and self.top_k >= MIN_TOP_K


def agreement(reference: np.ndarray, candidate: np.ndarray, *, images: tuple | None = None, k: int = K) -> Agreement:
    """Rows of ``candidate`` against the same rows of ``reference`` (both L2-normalised).

    Top-k compares searches: of the rows among themselves (image -> image), or, with
    ``images=(reference_images, candidate_images)``, of the rows as queries over those images
    (text -> image)."""
    cosines = np.sum(reference * candidate, axis=1)
    index_a, index_b = images if images is not None else (reference, candidate)
    return Agreement(float(cosines.min()), float(cosines.mean()), top_k_overlap(reference, candidate, index_a, index_b, k=k))


def top_k_overlap(queries_a, queries_b, index_a, index_b, *, k: int = K) -> float:
    """Mean share of the top-k found by each side (each searching its own vectors)."""
    k = min(k, len(index_a))
    top_a = np.argsort(-(queries_a @ index_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ index_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)]))


def combined(*parts: Agreement) -> Agreement:
    """The worst minimum, and the means, of several sets (image and text vectors)."""
    return Agreement(
        min(p.min_cosine for p in parts), float(np.mean([p.mean_cosine for p in parts])), min(p.top_k for p in parts)
    )

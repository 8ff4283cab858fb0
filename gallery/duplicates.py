"""Near-duplicates: the same photo uploaded again resized, re-compressed, cropped a little or
slightly colour-shifted (the exact same bytes are already refused by the upload's SHA-256).

After an embed run, each newly embedded image is compared with every stored vector of the
same model (exact numpy: a matrix-vector product per new image, fine up to ~100k images, when
the matrix is 200 MB of float32 at 512 dimensions; past that, ask the Annoy index instead). A
pair is a near-duplicate when its cosine is at least ``DUPLICATE_MIN_COSINE`` and the two
64-bit perceptual hashes (DCT pHash, taken at upload) differ in at most
``DUPLICATE_MAX_PHASH_DISTANCE`` bits; rows without a hash (uploaded before hashes existed)
need ``DUPLICATE_COSINE_ALONE`` instead. Pairs are joined into groups with union-find, and a
group that meets an open group merges into it. Hidden images are left out: a curator has
already dealt with them.

docs/performance.md ("Near-duplicates") measures the rule: pHash carries it; CLIP's cosine is a
cheap first cut that, with real weights, also stops two different photos whose hashes happen
to collide.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from gallery import curation
from gallery.errors import InvalidInput
from gallery.models import DuplicateGroup, Image
from gallery.perceptual_hash import hash_distance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DuplicateRule:
    """When two images are near-duplicates; the one rule, used by the service and by
    benchmarks/near_duplicates.py."""

    min_cosine: float
    max_phash_distance: int
    cosine_alone: float  # for a pair where either image has no perceptual hash

    @classmethod
    def from_settings(cls) -> DuplicateRule:
        return cls(settings.DUPLICATE_MIN_COSINE, settings.DUPLICATE_MAX_PHASH_DISTANCE, settings.DUPLICATE_COSINE_ALONE)

    def matches(self, cosine: float, distance: int | None) -> bool:
        if distance is None:
            return cosine >= self.cosine_alone
        return cosine >= self.min_cosine and distance <= self.max_phash_distance

    @property
    def floor(self) -> float:
        """No pair below this cosine can match."""
        return min(self.min_cosine, self.cosine_alone)


def near_duplicate_pairs(
    ids: np.ndarray, vectors: np.ndarray, hashes: list[str | None], new: Iterable[int], *, rule: DuplicateRule
) -> list[tuple[int, int]]:
    """Pairs ``(id, id)`` of near-duplicates between rows ``new`` (positions) and all rows."""
    pairs = set()
    new = np.fromiter(new, dtype=np.int64)
    for start in range(0, len(new), _BLOCK):  # a block of rows per matrix product: BLAS speed, bounded memory
        block = new[start : start + _BLOCK]
        scores = vectors[block] @ vectors.T
        for n, other in zip(*np.nonzero(scores >= rule.floor)):
            row = int(block[n])
            if other != row and rule.matches(float(scores[n, other]), hash_distance(hashes[row], hashes[other])):
                pairs.add(tuple(sorted((int(ids[row]), int(ids[other])))))
    return sorted(pairs)


_BLOCK = 256  # x 100k stored vectors: 100 MB of scores at a time


def connected_groups(pairs: Iterable[tuple[int, int]]) -> list[set[int]]:
    """Union-find: the sets of ids linked by ``pairs``, each of two or more."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, set[int]] = {}
    for x in list(parent):
        groups.setdefault(root(x), set()).add(x)
    return sorted(groups.values(), key=min)


def find_near_duplicates(image_ids: Iterable[int]) -> list[DuplicateGroup]:
    """Compare the embedded images of ``image_ids`` with every visible image of the same
    model and record the near-duplicates as groups. Returns the groups created or grown;
    running it again changes nothing."""
    wanted = set(image_ids)
    visible = Image.objects.filter(embedding__isnull=False, hidden=False).exclude(status=Image.Status.FAILED)
    rule = DuplicateRule.from_settings()
    touched: dict[int, DuplicateGroup] = {}
    # Usually one model; a model change re-embeds everything, and each space is compared apart.
    for model_id in visible.order_by().values_list("embedding_model", flat=True).distinct():
        rows = list(visible.filter(embedding_model=model_id).order_by("pk").values_list("pk", "embedding", "phash"))
        if not wanted.intersection(pk for pk, _, _ in rows):
            continue
        ids = np.fromiter((pk for pk, _, _ in rows), dtype=np.int64, count=len(rows))
        vectors = np.vstack([np.frombuffer(bytes(blob), dtype=np.float32) for _, blob, _ in rows])
        new = [n for n, pk in enumerate(ids.tolist()) if pk in wanted]
        for members in connected_groups(near_duplicate_pairs(ids, vectors, [h for _, _, h in rows], new, rule=rule)):
            group = _record_group(members)
            if group is not None:
                touched[group.pk] = group
    if touched:
        logger.info("near-duplicates: %d group(s) found or grown", len(touched))
    return list(touched.values())


def _record_group(members: set[int]) -> DuplicateGroup | None:
    """Put ``members`` in one open group: a new one, or the open group(s) they meet, merged."""
    with transaction.atomic():
        meeting = set(
            DuplicateGroup.objects.filter(resolved=False, members__in=members).values_list("pk", flat=True)
        )
        groups = list(DuplicateGroup.objects.select_for_update().filter(pk__in=meeting).order_by("pk"))
        if not groups:
            group = DuplicateGroup.objects.create()
        else:
            group, others = groups[0], groups[1:]
            for other in others:
                members |= set(other.members.values_list("pk", flat=True))
                other.delete()
            if not others and members <= set(group.members.values_list("pk", flat=True)):
                return None  # already recorded
        group.members.add(*members)
    return group


def open_duplicate_groups():
    """Groups a curator has not resolved yet, with their members, oldest members first."""
    return DuplicateGroup.objects.filter(resolved=False).prefetch_related("members")


def duplicates_keep(*, group: DuplicateGroup, image: Image) -> int:
    """Keep ``image`` (visible) and hide the other members; the group is resolved. Returns how
    many images were hidden."""
    if not group.members.filter(pk=image.pk).exists():
        raise InvalidInput("That image is not in this group of near-duplicates.")
    with transaction.atomic():
        others = Image.objects.filter(duplicate_groups=group).exclude(pk=image.pk)
        hidden = curation.images_set_hidden(images=others, hidden=True)
        curation.images_set_hidden(images=Image.objects.filter(pk=image.pk), hidden=False)
        group.resolved, group.kept, group.resolved_at = True, image, timezone.now()
        group.save(update_fields=["resolved", "kept", "resolved_at"])
    logger.info("duplicates #%s: kept image %s, hid %d", group.pk, image.pk, hidden)
    return hidden

"""Near-duplicates: the same photo uploaded again resized, re-compressed, cropped a little or
slightly colour-shifted (the exact same bytes are already refused by the upload's SHA-256).

After an embed run, the DAG's ``near_duplicates`` task (or ``manage.py hash_images``) asks the
search engine for each newly embedded image's nearest stored vectors (``gallery.engine.neighbours``:
the current index and the fresh segment; DUPLICATE_CANDIDATES of them) and compares the image
with those candidates only, and with the other new images of the run: the rows read do not grow
with the gallery. A pair is a near-duplicate when its cosine is at least
``DUPLICATE_MIN_COSINE`` and its perceptual hashes (gallery/catalogue/perceptual_hash.py, taken at
upload) agree: the crop-tolerant 256-bit distance at most ``DUPLICATE_MAX_PHASH256_DISTANCE``,
or, where either row predates the 256-bit hashes, the 64-bit distance at most
``DUPLICATE_MAX_PHASH_DISTANCE``; rows without any hash need ``DUPLICATE_COSINE_ALONE``
instead. ``manage.py hash_images`` fills in the hashes of older rows. Pairs are joined into
groups with union-find, and a group that meets an open group merges into it. Hidden images are
left out: a curator has already dealt with them.

docs/performance.md ("Near-duplicates") measures the rule: pHash carries it; CLIP's cosine is a
cheap first cut that, with real weights, also stops two different photos whose hashes happen
to collide. Every pair the rule accepts has a cosine of at least ``DuplicateRule.floor`` (0.8 by
default): such close vectors are among each other's nearest neighbours, so asking the engine
for a few dozen finds them (the recall gate holds every Annoy build to finding a stored vector's
own image in its top 10, the easiest case of the same thing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from gallery.catalogue import curation
from gallery.catalogue.perceptual_hash import (
    PerceptualHashes,
    crop_tolerant_distance,
    hash_distance,
    perceptual_hashes,
)
from gallery.catalogue.sampling import pk_among
from gallery.catalogue.uploads import decode_upload
from gallery.engine.neighbours import nearest_stored
from gallery.errors import InvalidInput
from gallery.models import DuplicateGroup, Image, vectors_of
from indexer.images import make_thumbnail

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DuplicateRule:
    """When two images are near-duplicates; the one rule, used by the service and by
    benchmarks/near_duplicates.py."""

    min_cosine: float
    max_phash_distance: int  # of 64 bits, for a pair where either image lacks the 256-bit hashes
    cosine_alone: float  # for a pair where either image has no perceptual hash at all
    max_phash256_distance: int  # of 256 bits, crop-tolerant (perceptual_hash.crop_tolerant_distance)

    @classmethod
    def from_settings(cls) -> DuplicateRule:
        return cls(
            min_cosine=settings.DUPLICATE_MIN_COSINE,
            max_phash_distance=settings.DUPLICATE_MAX_PHASH_DISTANCE,
            cosine_alone=settings.DUPLICATE_COSINE_ALONE,
            max_phash256_distance=settings.DUPLICATE_MAX_PHASH256_DISTANCE,
        )

    def matches(self, cosine: float, a: PerceptualHashes, b: PerceptualHashes) -> bool:
        if cosine < self.floor:
            return False
        distance = crop_tolerant_distance(a, b)
        if distance is not None:
            return cosine >= self.min_cosine and distance <= self.max_phash256_distance
        distance = hash_distance(a.phash, b.phash)
        if distance is not None:
            return cosine >= self.min_cosine and distance <= self.max_phash_distance
        return cosine >= self.cosine_alone

    @property
    def floor(self) -> float:
        """No pair below this cosine can match."""
        return min(self.min_cosine, self.cosine_alone)


def near_duplicate_pairs(
    ids: np.ndarray, vectors: np.ndarray, hashes: list[PerceptualHashes], new: Iterable[int], *, rule: DuplicateRule
) -> list[tuple[int, int]]:
    """Pairs ``(id, id)`` of near-duplicates between rows ``new`` (positions) and all rows
    (the service passes a new block and its candidates; the benchmark, a whole set)."""
    pairs = set()
    new = np.fromiter(new, dtype=np.int64)
    for start in range(0, len(new), _BLOCK):  # a block of rows per matrix product: BLAS speed, bounded memory
        block = new[start : start + _BLOCK]
        scores = vectors[block] @ vectors.T
        for n, other in zip(*np.nonzero(scores >= rule.floor)):
            row = int(block[n])
            if other != row and rule.matches(float(scores[n, other]), hashes[row], hashes[other]):
                pairs.add(tuple(sorted((int(ids[row]), int(ids[other])))))
    return sorted(pairs)


_BLOCK = 256  # new images per step: their candidates are at most 256 x DUPLICATE_CANDIDATES rows


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


def near_duplicates_find(*, image_ids: Iterable[int]) -> list[DuplicateGroup]:
    """Compare the embedded, visible images of ``image_ids`` with their nearest stored vectors
    and record the near-duplicates as groups. Returns the groups created or grown; running it
    again changes nothing.

    The search engine proposes the candidates: each image's DUPLICATE_CANDIDATES nearest
    vectors of its model in the current index and the fresh segment (``gallery.engine.neighbours``),
    plus the other images of ``image_ids`` (two copies uploaded in one run may not be in the
    fresh segment yet, if a publish raced with this check). Only the candidates' rows are read;
    the rule (:class:`DuplicateRule`) is then applied exactly, to their stored vectors and
    hashes, as before: what the engine changes is which pairs are looked at, never how a pair
    is judged."""
    wanted = sorted(set(image_ids))
    rule = DuplicateRule.from_settings()
    touched: dict[int, DuplicateGroup] = {}
    for start in range(0, len(wanted), _BLOCK):
        new_rows = _comparable_rows(wanted[start : start + _BLOCK])
        # Usually one model; during a model change each space is compared apart.
        for model_id in sorted({row[1] for row in new_rows}):
            rows = [row for row in new_rows if row[1] == model_id]
            new_ids = {row[0] for row in rows}
            vectors = vectors_of(row[2] for row in rows)
            nearest = nearest_stored(vectors, model_id=model_id, k=settings.DUPLICATE_CANDIDATES)
            candidates = {pk for hits in nearest for pk, score in hits if score >= rule.floor} - new_ids
            found = [row for row in _comparable_rows(sorted(candidates)) if row[1] == model_id]
            rows += found
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            if found:  # the new rows' vectors are decoded already
                vectors = np.vstack([vectors, vectors_of(row[2] for row in found)])
            hashes = [PerceptualHashes(*row[3:]) for row in rows]
            pairs = near_duplicate_pairs(ids, vectors, hashes, range(len(new_ids)), rule=rule)
            for members in connected_groups(pairs):
                group = _record_group(members)
                if group is not None:
                    touched[group.pk] = group
    if touched:
        logger.info("near-duplicates: %d group(s) found or grown", len(touched))
    return list(touched.values())


def _comparable_rows(ids: list[int]) -> list[tuple]:
    """``(pk, model, vector bytes, phash, phash256, phash256_centre)`` of the rows of ``ids``
    that can be near-duplicates: embedded, visible (a curator has dealt with hidden ones), not
    failed. In pk order."""
    visible = Image.objects.visible().filter(embedding__isnull=False).exclude(status=Image.Status.FAILED)
    rows = visible.filter(pk_among(ids)).order_by("pk")
    return list(rows.values_list("pk", "embedding_model", "embedding", "phash", "phash256", "phash256_centre"))


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


def images_hash_missing(*, batch_size: int = 100) -> list[int]:
    """Take the perceptual hashes of images uploaded before (some of) them existed, from the
    stored original, decoded and shrunk as an upload is. Returns the ids hashed; an original
    that cannot be read or decoded is logged and skipped (its row keeps working with what it
    has). Running it again hashes nothing more."""
    missing = Image.objects.filter(Q(phash__isnull=True) | Q(phash256__isnull=True) | Q(phash256_centre__isnull=True))
    done: list[int] = []
    last = 0
    while batch := list(missing.filter(pk__gt=last).order_by("pk").only("pk", "file")[:batch_size]):
        last = batch[-1].pk
        for image in batch:
            try:
                with default_storage.open(image.file.name, "rb") as handle:
                    _, picture = decode_upload(handle.read())
            except Exception as exc:  # a missing or unreadable file is the row's problem, not the run's
                logger.warning("image %s: could not hash its original: %s", image.pk, exc)
                continue
            make_thumbnail(picture, in_place=True)  # the picture the upload hashes
            hashes = perceptual_hashes(picture)
            Image.objects.filter(pk=image.pk).update(
                phash=hashes.phash, phash256=hashes.phash256, phash256_centre=hashes.phash256_centre
            )
            done.append(image.pk)
    return done


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

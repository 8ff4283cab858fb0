from __future__ import annotations

import datetime
from functools import lru_cache

import numpy as np
from django.conf import settings
from django.db import models
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from indexer.backends import BACKENDS
from indexer.embedding import same_weights

TAG_NAMES_SEPARATOR = ", "  # in Image.tag_names; tag names never hold a comma (gallery.catalogue.tags)


class Tag(models.Model):
    """A word or short phrase curators and uploaders attach to images. Names are kept
    normalised (lower case, single spaces: see ``gallery.catalogue.tags``), so "Sunset" and "sunset " are one tag."""

    NAME_MAX_LENGTH = 50

    name = models.CharField(_("name"), max_length=NAME_MAX_LENGTH, unique=True)
    slug = models.SlugField(_("slug"), max_length=NAME_MAX_LENGTH + 10, unique=True, allow_unicode=True)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        from django.utils.http import urlencode

        return reverse("gallery:gallery") + "?" + urlencode({"tag": self.name})


# A text query's length in characters, wherever one is typed or kept (search, pins, golden and
# saved searches); CLIP reads at most 77 tokens anyway.
MAX_QUERY_LENGTH = 300


def decode_vector(blob) -> np.ndarray:
    """A stored float32 vector (``Image.embedding``, a saved search's image vector)."""
    return np.frombuffer(bytes(blob), dtype=np.float32)


class ImageQuerySet(models.QuerySet):
    def visible(self) -> ImageQuerySet:
        """Images nobody hid: all that anyone but a curator asking about hidden ones sees."""
        return self.filter(hidden=False)

    def embedded(self, model_id: str) -> ImageQuerySet:
        """Rows with a vector of ``model_id``."""
        return self.filter(embedding_model=model_id, embedding__isnull=False)

    def indexable(self, model_id: str) -> ImageQuerySet:
        """The rows an index of ``model_id`` is built from: its vectors, failed rows left out;
        hidden rows are built in, marked invisible."""
        return self.embedded(model_id).exclude(status=Image.Status.FAILED)

    def fresh(self, model_id: str | None = None) -> ImageQuerySet:
        """Rows with a vector (of ``model_id`` in any runtime, or of any model) that no current
        index holds yet: rows become indexed exactly when a version containing them is made
        current. Any runtime, as the index itself answers queries of another runtime of the same
        weights (``indexer.index.check_model``): a web tier on ONNX finds what a torch indexer
        embedded."""
        rows = self.filter(status=Image.Status.PENDING, embedding__isnull=False)
        if model_id is None:
            return rows
        return rows.filter(embedding_model__in=same_weights(model_id))


# Stands for the id in the reversed URL and is replaced by it: its digits appear nowhere else
# there (only a script prefix could hold them), whatever ids exist.
_PK_MARKER = "9876543210123"


@lru_cache(maxsize=16)
def _image_page_url(prefix: str, urlconf) -> str:
    """The image page's URL with :data:`_PK_MARKER` for the id, reversed once per script prefix
    (``reverse`` reads it itself) and URLconf: ``reverse`` matches the pattern again on every call,
    ~20 us, for each of the 16 images of a page of results or of the gallery (2 AMD EPYC cores
    with avx2 avx512f avx512_vnni avx512_bf16)."""
    return reverse("gallery:image-detail", args=[int(_PK_MARKER)], urlconf=urlconf)


class Image(models.Model):
    TITLE_MAX_LENGTH = 200
    DESCRIPTION_MAX_LENGTH = 5000  # a caption or a product text, not a document

    objects = ImageQuerySet.as_manager()

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")  # waiting for the next index run
        INDEXED = "indexed", _("indexed")  # in the current published index
        FAILED = "failed", _("failed")  # could not be embedded; see `error`

    file = models.FileField(_("original"), max_length=255)
    thumbnail = models.FileField(_("thumbnail"), max_length=255)
    sha256 = models.CharField(_("SHA-256"), max_length=64, unique=True, editable=False)
    # title, description, tag_names, ocr_text and ocr_terms make PostgreSQL's stored keyword
    # document (a generated column, migration 0015, unknown to this model): PostgreSQL refuses to
    # change their type while it exists, so such a migration drops the column and adds it again.
    title = models.CharField(_("title"), max_length=TITLE_MAX_LENGTH, blank=True)
    description = models.TextField(_("description"), blank=True)
    width = models.PositiveIntegerField(_("width"), editable=False)
    height = models.PositiveIntegerField(_("height"), editable=False)
    size_bytes = models.PositiveBigIntegerField(_("size in bytes"), editable=False)
    # Indexed with the id (image_newest_first, below): an index of its own would only cost writes.
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)

    class DateSource(models.TextChoices):
        CAMERA = "camera", _("date taken")  # from the photo's EXIF block
        UPLOAD = "upload", _("upload time")  # the photo holds no readable date
        UNREAD = "", _("not read yet")  # uploaded before dates were read: manage.py read_photo_facts

    # When the photo was taken (gallery.catalogue.photo_facts reads it from EXIF at upload), else when it was
    # uploaded: the timeline's order, so never empty. ``taken_at_offset`` keeps the camera's UTC
    # offset in minutes, to show the time as it was where the photo was taken.
    taken_at = models.DateTimeField(_("taken at"), default=timezone.now)
    taken_at_source = models.CharField(
        _("date source"), max_length=8, choices=DateSource.choices, blank=True, default=DateSource.UNREAD, editable=False
    )
    taken_at_offset = models.SmallIntegerField(_("UTC offset of the date taken (minutes)"), null=True, blank=True, editable=False)
    camera_make = models.CharField(_("camera make"), max_length=100, blank=True, editable=False)
    camera_model = models.CharField(_("camera model"), max_length=100, blank=True, editable=False)
    lens = models.CharField(_("lens"), max_length=100, blank=True, editable=False)
    latitude = models.FloatField(_("latitude"), null=True, blank=True, editable=False)
    longitude = models.FloatField(_("longitude"), null=True, blank=True, editable=False)
    exif_orientation = models.PositiveSmallIntegerField(_("EXIF orientation"), null=True, blank=True, editable=False)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING  # first in image_status_counts
    )
    error = models.TextField(_("error"), blank=True)
    # float32 bytes of the L2-normalised CLIP vector; `embedding_model` names its vector space.
    embedding = models.BinaryField(_("embedding"), null=True, editable=False)
    embedding_model = models.CharField(_("embedding model"), max_length=200, blank=True, editable=False)
    embedded_at = models.DateTimeField(_("embedded at"), null=True, editable=False)
    hidden = models.BooleanField(_("hidden"), default=False, db_index=True)
    # DCT perceptual hashes (gallery.catalogue.perceptual_hash) as hex digits, taken at upload from the
    # decoded picture; they confirm near-duplicates (gallery.indexing.duplicates). 64 bits of the whole
    # frame, and 256 bits of the whole frame and of its middle 90% (crop-tolerant). Null for
    # rows uploaded before each existed until ``manage.py hash_images`` fills them in.
    phash = models.CharField(_("perceptual hash"), max_length=16, null=True, blank=True, editable=False)
    phash256 = models.CharField(_("256-bit perceptual hash"), max_length=64, null=True, blank=True, editable=False)
    phash256_centre = models.CharField(
        _("256-bit perceptual hash of the centre"), max_length=64, null=True, blank=True, editable=False
    )
    tags = models.ManyToManyField(Tag, verbose_name=_("tags"), related_name="images", blank=True)
    # The tag names as one text, so full-text search reads title, tags and description from one
    # row (PostgreSQL's stored keyword document is generated from this row only). Written by
    # ``gallery.catalogue.tags`` whenever the tags change; never edited by hand.
    tag_names = models.TextField(_("tag names"), blank=True, editable=False)
    # The words read in the picture (OCR: gallery.indexing.ocr), one line per line read, and the other
    # spellings of the codes among them ("SKU-10473": "SKU10473 SKU 10473"), so people find a
    # code however they type it. Both are searched with the title, tags and description; the
    # boxes and confidences are in ImageText. Written by gallery.indexing.ocr only.
    ocr_text = models.TextField(_("text in the picture"), blank=True, editable=False)
    ocr_terms = models.TextField(_("code spellings"), blank=True, editable=False)

    class Meta:
        verbose_name = _("image")
        verbose_name_plural = _("images")
        ordering = ["-uploaded_at", "-pk"]
        permissions = [("reindex_image", _("Can start an index run"))]
        indexes = [
            # Every search asks whether the fresh segment changed (gallery.engine.fresh_segment's
            # fingerprint: count and maxima over the embedded pending rows of one model). This
            # covers that query, which otherwise reads each of those rows: 27 ms per search at
            # 10,000 fresh rows on SQLite.
            models.Index(
                fields=["status", "embedding_model", "embedded_at"],
                condition=models.Q(embedding__isnull=False),
                name="image_fresh_segment",
            ),
            # The timeline: newest taken first, and keyset pages that seek rather than skip.
            models.Index(fields=["-taken_at", "-id"], name="image_timeline"),
            # A run started by uploads lists the rows no model has embedded yet (the new
            # uploads): a few rows, found without reading the embedded ones, the whole gallery.
            models.Index(fields=["status"], condition=models.Q(embedding__isnull=True), name="image_without_vector"),
            # /media/ finds the row a path belongs to (gallery.web.views.media): one index lookup
            # per file, for a made-up path too, instead of reading the table.
            models.Index(fields=["file"], name="image_file"),
            models.Index(fields=["thumbnail"], name="image_thumbnail"),
            # The gallery grid and the API list, newest first, page by page from a cursor
            # (gallery.api.pagination.ImageListPagination): the same cost for the first page and
            # the millionth row.
            models.Index(fields=["uploaded_at", "id"], name="image_newest_first"),
            # The status line's counts (gallery.catalogue.status.index_counts, cached) read this index
            # alone, not the rows with their vectors: ~20 bytes a row instead of ~2 KB.
            models.Index(fields=["status", "hidden", "embedded_at"], name="image_status_counts"),
            # Which of a search's ~320 ranked ids are hidden (gallery.catalogue.visible): a probe
            # each into the few hidden ones, not into an index of the whole gallery. With the
            # column it is about, so SQLite reads the index alone, not the rows it finds.
            models.Index(fields=["id", "hidden"], condition=models.Q(hidden=True), name="image_hidden_ids"),
        ]

    def __str__(self):
        return self.title or f"Image {self.pk}"

    def tag_name_list(self) -> list[str]:
        """The names of its tags, sorted, read from ``tag_names``: pages and the API show tags
        without a query for them (a prefetch cost ~1 ms of a 16-result page, a manager per image,
        on 2 AMD EPYC cores)."""
        return self.tag_names.split(TAG_NAMES_SEPARATOR) if self.tag_names else []

    def get_absolute_url(self):
        if self.pk is None:  # not saved: no page (reverse says so, as before)
            return reverse("gallery:image-detail", args=[self.pk])
        return _image_page_url(get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF).replace(_PK_MARKER, str(self.pk))

    class SearchState(models.TextChoices):
        WAITING = "waiting", _("waiting")  # not embedded yet
        SEARCHABLE = "searchable", _("searchable")  # embedded: found by search in the fresh segment
        INDEXED = "indexed", _("indexed")  # in the built index
        FAILED = "failed", _("failed")

    @property
    def search_state(self) -> str:
        """What search does with this image now (no column: derived from status and vector).
        Rows become indexed exactly when a version holding them is current, so a pending row
        with a vector is in the fresh segment. ``embedded_at`` is set and cleared with the
        vector and stays loaded where lists defer the vector itself."""
        if self.status == self.Status.PENDING:
            return self.SearchState.SEARCHABLE if self.embedded_at is not None else self.SearchState.WAITING
        return self.SearchState(self.status)

    @property
    def taken_at_wall(self):
        """The date taken as the clock read where the photo was taken (naive, so templates show
        it as is): in the camera's own offset when it wrote one, else in the gallery's zone."""
        if self.taken_at_offset is None:
            return timezone.localtime(self.taken_at).replace(tzinfo=None)
        zone = datetime.timezone(datetime.timedelta(minutes=self.taken_at_offset))
        return self.taken_at.astimezone(zone).replace(tzinfo=None)

    @property
    def taken_month(self) -> datetime.date:
        """The first day of the month it was taken, as the timeline groups it."""
        return self.taken_at_wall.date().replace(day=1)

    @property
    def taken_at_offset_label(self) -> str:
        """"UTC+02:00" for the camera's own offset, or '' when it wrote none."""
        if self.taken_at_offset is None:
            return ""
        hours, minutes = divmod(abs(self.taken_at_offset), 60)
        return f"UTC{'-' if self.taken_at_offset < 0 else '+'}{hours:02d}:{minutes:02d}"

    @property
    def camera(self) -> str:
        """"Canon EOS 5D", not "Canon Canon EOS 5D": many models repeat their make."""
        if self.camera_model.lower().startswith(self.camera_make.lower()):
            return self.camera_model
        return f"{self.camera_make} {self.camera_model}".strip()

    @property
    def vector(self) -> np.ndarray | None:
        return None if self.embedding is None else decode_vector(self.embedding)


def vectors_of(blobs) -> np.ndarray:
    """Stored float32 vectors (``Image.embedding``, a saved search's vectors) as one matrix, a
    row each."""
    blobs = [bytes(blob) for blob in blobs]
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)


class DeletedImage(models.Model):
    """An image deleted while a kept index version may still hold its vector: search leaves it
    out (``gallery.catalogue.visible``) by a probe into these few rows, not into an index of the
    whole gallery. Written by the database itself on every deletion, whichever way it came (a
    trigger: ``gallery.catalogue.tombstones``); removed by ``index_prune`` once no kept version
    was read before it."""

    image_id = models.BigIntegerField(primary_key=True)
    deleted_at = models.DateTimeField()  # the database's clock, set by the trigger

    class Meta:
        verbose_name = _("deleted image")


class VisibilityGeneration(models.Model):
    """One row: a random number the database changes whenever an image is hidden, shown again,
    inserted hidden or deleted, and whenever a pin is made, renamed or removed (triggers:
    ``gallery.catalogue.tombstones``). A process keeps the ids search leaves out and the queries
    that have a pin, and reads them again only when it changed (``gallery.catalogue.visible``,
    ``gallery.search.pins``)."""

    generation = models.BigIntegerField()


class IndexVersionQuerySet(models.QuerySet):
    def current(self, *fields: str) -> IndexVersion | None:
        """The version search serves, or ``None`` before the first publish; ``fields``: read only
        those (every search asks, so the web tier reads what it needs)."""
        rows = self.filter(is_current=True)
        return (rows.only(*fields) if fields else rows).first()


class IndexVersion(models.Model):
    """One published index version: Annoy files in storage, or a Milvus collection (``backend``).
    Exactly one row is current once anything was published."""

    version = models.CharField(_("version"), max_length=64, unique=True)
    # The engine it was built in (gallery.engine.backend): after a switch, a version of the other
    # one serves nothing. The default is the first engine's, for rows made before there were two.
    backend = models.CharField(_("backend"), max_length=20, default=BACKENDS[0])
    model = models.CharField(_("model"), max_length=200)
    dim = models.PositiveIntegerField(_("dimensions"))
    item_count = models.PositiveIntegerField(_("images"))
    n_trees = models.PositiveIntegerField(_("trees"))
    checksum = models.CharField(_("SHA-256 of the index"), max_length=64)
    # When the build read its vectors: a build that read earlier never replaces a later one.
    snapshot_at = models.DateTimeField(_("vectors read at"), null=True, db_index=True)
    embedded_count = models.PositiveIntegerField(_("newly embedded"), default=0)
    embed_seconds = models.FloatField(_("embedding seconds"), default=0)
    build_seconds = models.FloatField(_("build seconds"))
    created_at = models.DateTimeField(_("built at"), auto_now_add=True)
    is_current = models.BooleanField(_("current"), default=False)

    objects = IndexVersionQuerySet.as_manager()

    class Meta:
        verbose_name = _("index version")
        verbose_name_plural = _("index versions")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=models.Q(is_current=True), name="one_current_index"
            )
        ]

    def __str__(self):
        return self.version

    @property
    def storage_prefix(self) -> str:
        return f"{settings.INDEX_STORAGE_PREFIX}/{self.version}"


class PublishLease(models.Model):
    """One row: who is building and publishing an index, until when. Taken with a single
    conditional UPDATE, so it serialises publishers on SQLite and PostgreSQL alike, and a
    crashed holder's lease simply runs out."""

    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(null=True)

    class Meta:
        verbose_name = _("publish lease")


class CuratorRecord(models.Model):
    """Who made a curator's rule and when it last changed (the admin fills ``created_by``)."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        abstract = True


class QueryPin(CuratorRecord):
    """A curator's decision for one text query: these images first, in this order, and those
    never. ``query`` is stored normalised (``gallery.search.pins.normalise_query``), so " Red  Shoes "
    and "red shoes" are one query."""

    query = models.CharField(_("query"), max_length=MAX_QUERY_LENGTH, unique=True)
    pinned = models.ManyToManyField(
        Image, through="PinnedImage", related_name="pinned_for", verbose_name=_("pinned images"), blank=True
    )
    excluded = models.ManyToManyField(Image, related_name="excluded_from", verbose_name=_("excluded images"), blank=True)

    class Meta:
        verbose_name = _("curator pin")
        verbose_name_plural = _("curator pins")
        ordering = ["query"]

    def __str__(self):
        return self.query

    def pinned_ids(self) -> list[int]:
        return list(self.placements.order_by("position", "pk").values_list("image_id", flat=True))


class PinnedImage(models.Model):
    """One pinned image of a :class:`QueryPin`, at ``position`` (smallest first)."""

    pin = models.ForeignKey(QueryPin, on_delete=models.CASCADE, related_name="placements", verbose_name=_("pin"))
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+", verbose_name=_("image"))
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("pinned image")
        verbose_name_plural = _("pinned images")
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["pin", "image"], name="image_pinned_once_per_query")]

    def __str__(self):
        return f"{self.pin} #{self.position}: {self.image}"


class GoldenQuery(CuratorRecord):
    """A query curators know the answer to: a new index is published only if it finds at least
    as many of the expected images in its top ``k`` as the current one (``gallery.indexing.recall_gate``)."""

    text = models.CharField(_("query"), max_length=MAX_QUERY_LENGTH, unique=True)
    expected = models.ManyToManyField(Image, related_name="+", verbose_name=_("expected images"))
    k = models.PositiveSmallIntegerField(_("found within the top"), default=10)

    class Meta:
        verbose_name = _("golden query")
        verbose_name_plural = _("golden queries")
        ordering = ["text"]

    def __str__(self):
        return self.text


class RefusedBuild(models.Model):
    """An index build the recall gate refused: never stored, never an :class:`IndexVersion`
    (that table holds only versions whose files are in storage and that can be made current;
    pruning, rollback and the "older snapshot never wins" rule all read it)."""

    version = models.CharField(_("version"), max_length=64, unique=True)
    model = models.CharField(_("model"), max_length=200)
    item_count = models.PositiveIntegerField(_("images"))
    snapshot_at = models.DateTimeField(_("vectors read at"))
    structural_recall = models.FloatField(_("structural recall"))
    sample_size = models.PositiveIntegerField(_("sampled vectors"))
    golden_before = models.FloatField(_("golden score of the current version"), null=True)
    golden_after = models.FloatField(_("golden score of this build"), null=True)
    reason = models.TextField(_("reason"))
    current_version = models.CharField(_("version serving meanwhile"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("refused at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("refused index build")
        verbose_name_plural = _("refused index builds")
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return self.version


class DuplicateGroup(models.Model):
    """Images that look like copies of one another (resized, re-compressed, cropped a little),
    found after embedding (``gallery.indexing.duplicates``). A curator keeps one; the others are hidden
    and the group is resolved."""

    members = models.ManyToManyField(Image, related_name="duplicate_groups", verbose_name=_("images"))
    created_at = models.DateTimeField(_("found at"), auto_now_add=True, db_index=True)
    resolved = models.BooleanField(_("resolved"), default=False, db_index=True)
    kept = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("kept image")
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("duplicate group")
        verbose_name_plural = _("duplicate groups")
        ordering = ["resolved", "-created_at", "-pk"]

    def __str__(self):
        return f"Duplicates #{self.pk}"


class SavedSearch(models.Model):
    """A member's search, kept to be told about new matches. The query's fields are stored
    (not a signed token, which expires); an example image is kept only as its vector."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_searches", verbose_name=_("user"))
    name = models.CharField(_("name"), max_length=200, blank=True)
    text = models.CharField(_("text"), max_length=MAX_QUERY_LENGTH, blank=True)
    text_weight = models.FloatField(_("text weight"), default=1.0)
    image_vector = models.BinaryField(_("example image vector"), null=True, editable=False)  # float32 bytes
    image_model = models.CharField(_("vector space of the example image"), max_length=200, blank=True, editable=False)
    image_weight = models.FloatField(_("image weight"), default=1.0)
    negative_text = models.CharField(_("but not"), max_length=MAX_QUERY_LENGTH, blank=True)
    negative_weight = models.FloatField(_("negative weight"), default=0.5)
    # The combined query vector, encoded once when saved (gallery.search.saved_searches) and again only
    # when the gallery's model changes: matching new images never runs the text encoder.
    query_vector = models.BinaryField(_("query vector"), null=True, editable=False)  # float32 bytes
    query_model = models.CharField(_("vector space of the query vector"), max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(_("saved at"), auto_now_add=True)
    # Matches found after this are "new" on the member's page; null: never looked.
    last_seen_at = models.DateTimeField(_("last looked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("saved search")
        verbose_name_plural = _("saved searches")
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return self.name or self.text or f"Saved search {self.pk}"

    def get_absolute_url(self):
        return reverse("gallery:saved-searches") + f"#saved-{self.pk}"


class SavedSearchMatch(models.Model):
    """An image that matched a saved search when it was embedded, with its score then."""

    saved_search = models.ForeignKey(SavedSearch, on_delete=models.CASCADE, related_name="matches")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="saved_search_matches")
    score = models.FloatField(_("score"))
    found_at = models.DateTimeField(_("found at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("saved search match")
        verbose_name_plural = _("saved search matches")
        ordering = ["-found_at", "-score", "pk"]
        constraints = [models.UniqueConstraint(fields=["saved_search", "image"], name="one_match_per_image")]
        # A search's matches in the order they are listed: a page reads its 16 rows, not every
        # match sorted (1,000 of them at a million images in benchmarks/scale.py: 2.9 -> 0.1 ms).
        indexes = [models.Index(fields=["saved_search", "-found_at", "-score", "id"], name="match_newest_first")]


class ImageText(models.Model):
    """What OCR read in one image: each line with its box and confidence. One row per image
    that was read, even when nothing was found (so nothing is read twice); ``source`` is the
    original it read, so a new original (replaced, rotated) is read again."""

    image = models.OneToOneField(
        Image, on_delete=models.CASCADE, primary_key=True, related_name="ocr_record", verbose_name=_("image")
    )
    # [{"text": ..., "box": [[x, y] * 4 as fractions of width and height], "confidence": 0..1}]
    lines = models.JSONField(_("lines"), default=list, blank=True)
    confidence = models.FloatField(_("mean confidence"), null=True, blank=True)
    engine = models.CharField(_("engine"), max_length=20)
    source = models.CharField(_("original read"), max_length=255)
    seconds = models.FloatField(_("seconds"), default=0)
    error = models.TextField(_("error"), blank=True)
    read_at = models.DateTimeField(_("read at"), auto_now=True)

    class Meta:
        verbose_name = _("text in an image")
        verbose_name_plural = _("text in images")
        ordering = ["-read_at", "-pk"]

    def __str__(self):
        return f"Text of {self.image_id}"

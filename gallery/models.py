import numpy as np
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _


class Image(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")  # waiting for the next index run
        INDEXED = "indexed", _("indexed")  # in the current published index
        FAILED = "failed", _("failed")  # could not be embedded; see `error`

    file = models.FileField(_("original"), max_length=255)
    thumbnail = models.FileField(_("thumbnail"), max_length=255)
    sha256 = models.CharField(_("SHA-256"), max_length=64, unique=True, editable=False)
    title = models.CharField(_("title"), max_length=200, blank=True)
    description = models.TextField(_("description"), blank=True)
    width = models.PositiveIntegerField(_("width"), editable=False)
    height = models.PositiveIntegerField(_("height"), editable=False)
    size_bytes = models.PositiveBigIntegerField(_("size in bytes"), editable=False)
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now_add=True, db_index=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    error = models.TextField(_("error"), blank=True)
    # float32 bytes of the L2-normalised CLIP vector; `embedding_model` names its vector space.
    embedding = models.BinaryField(_("embedding"), null=True, editable=False)
    embedding_model = models.CharField(_("embedding model"), max_length=200, blank=True, editable=False)
    embedded_at = models.DateTimeField(_("embedded at"), null=True, editable=False)
    hidden = models.BooleanField(_("hidden"), default=False, db_index=True)

    class Meta:
        verbose_name = _("image")
        verbose_name_plural = _("images")
        ordering = ["-uploaded_at", "-pk"]

    def __str__(self):
        return self.title or f"Image {self.pk}"

    def get_absolute_url(self):
        return reverse("gallery:image-detail", args=[self.pk])

    @property
    def vector(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return np.frombuffer(bytes(self.embedding), dtype=np.float32)


class IndexVersion(models.Model):
    """One published Annoy index. Exactly one row is current once anything was published."""

    version = models.CharField(_("version"), max_length=64, unique=True)
    model = models.CharField(_("model"), max_length=200)
    dim = models.PositiveIntegerField(_("dimensions"))
    item_count = models.PositiveIntegerField(_("images"))
    n_trees = models.PositiveIntegerField(_("trees"))
    checksum = models.CharField(_("SHA-256 of the index"), max_length=64)
    embedded_count = models.PositiveIntegerField(_("newly embedded"), default=0)
    embed_seconds = models.FloatField(_("embedding seconds"), default=0)
    build_seconds = models.FloatField(_("build seconds"))
    created_at = models.DateTimeField(_("built at"), auto_now_add=True)
    is_current = models.BooleanField(_("current"), default=False)

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
        from django.conf import settings

        return f"{settings.INDEX_STORAGE_PREFIX}/{self.version}"

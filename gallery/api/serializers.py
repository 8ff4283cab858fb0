from django.utils import timezone
from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gallery.catalogue import access
from gallery.catalogue.tags import tag_names_parse
from gallery.errors import GalleryError
from gallery.models import MAX_QUERY_LENGTH, Image
from gallery.search import DEFAULT_NEGATIVE_WEIGHT
from gallery.search.ranking import BOTH, LOOKS, RANKINGS, WORDS


@extend_schema_field({"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]})
class TagsField(serializers.Field):
    """Tag names as a list of strings (JSON) or one comma-separated text (multipart forms)."""

    default_error_messages = {"invalid": "Give a list of tag names or one comma-separated text."}

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "tag names: a list, or one comma-separated text")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) and not (isinstance(data, list) and all(isinstance(item, str) for item in data)):
            self.fail("invalid")
        try:
            return tag_names_parse(data)
        except GalleryError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


class ImageSerializer(serializers.ModelSerializer):
    page_url = serializers.SerializerMethodField(help_text="the image's page in the web UI")
    original_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField(help_text="why embedding failed (the details only for curators)")
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    text_in_picture = serializers.CharField(
        source="ocr_text", read_only=True, help_text="the words read in the picture (OCR), a line each; empty until read"
    )
    state = serializers.ChoiceField(
        source="search_state",
        choices=Image.SearchState.choices,
        read_only=True,
        help_text="waiting (not embedded yet), searchable (found by search, not yet in the built index), "
        "indexed (in the built index) or failed",
    )

    class Meta:
        model = Image
        fields = [
            "id", "title", "description", "tags", "width", "height", "size_bytes", "uploaded_at", "status", "state", "error",
            "hidden", "embedding_model", "embedded_at", "page_url", "original_url", "thumbnail_url", "text_in_picture",
            "taken_at", "taken_at_source", "taken_at_offset", "camera_make", "camera_model", "lens", "latitude", "longitude",
        ]
        read_only_fields = fields

    # Fields rendered by a method of this class, and the model's dates (ISO 8601, as DRF's
    # DateTimeField writes them); every other field is the model's attribute as it is.
    _BY_METHOD = ("page_url", "original_url", "thumbnail_url", "error")
    _DATES = ("uploaded_at", "embedded_at", "taken_at")
    _RENAMED = {"state": "search_state", "text_in_picture": "ocr_text"}

    def to_representation(self, image):
        """What DRF's per-field path gives for these fields (tests/test_api.py compares the two
        on every kind of value), written out: that path cost ~0.35 ms an image, 5-6 ms of a
        page of 16 search results (AMD EPYC), a quarter of a search request; this costs a
        tenth of it. A field added to ``Meta.fields`` is rendered as its attribute unless named
        here."""
        zone = timezone.get_current_timezone()
        data = {}
        for name in self.Meta.fields:
            if name in self._BY_METHOD:
                data[name] = getattr(self, f"get_{name}")(image)
            elif name in self._DATES:
                data[name] = _iso_8601(getattr(image, name), zone)
            elif name == "tags":
                data[name] = image.tag_name_list()
            else:
                data[name] = getattr(image, self._RENAMED.get(name, name))
        return data

    def _absolute(self, url: str) -> str:
        if url.startswith("/") and not url.startswith("//") and self._origin is not None:
            return self._origin + url  # what build_absolute_uri gives for a path, without parsing it
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    @cached_property
    def _origin(self) -> str | None:
        """``scheme://host`` of the request, read once for the three URLs of every image."""
        request = self.context.get("request")
        return request.build_absolute_uri("/")[:-1] if request else None

    def get_error(self, image) -> str:
        request = self.context.get("request")
        if not image.error or (request and access.can_curate(request.user)):
            return image.error
        return "This image could not be read or embedded."

    def get_page_url(self, image) -> str:
        return self._absolute(image.get_absolute_url())

    def get_original_url(self, image) -> str:
        return self._absolute(image.file.url)

    def get_thumbnail_url(self, image) -> str:
        return self._absolute(image.thumbnail.url)


def _iso_8601(value, zone):
    """DRF's DateTimeField.to_representation with its defaults (ISO 8601, the current zone)."""
    if not value:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class UploadedImageSerializer(ImageSerializer):
    created = serializers.BooleanField(help_text="false when the same bytes were already in the gallery")

    class Meta(ImageSerializer.Meta):
        fields = [*ImageSerializer.Meta.fields, "created"]
        read_only_fields = fields


class ImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JPEG, PNG, WebP, GIF, BMP or TIFF")
    title = serializers.CharField(max_length=Image.TITLE_MAX_LENGTH, required=False, default="", allow_blank=True)
    description = serializers.CharField(
        max_length=Image.DESCRIPTION_MAX_LENGTH, required=False, default="", allow_blank=True
    )
    tags = TagsField(required=False, default=list)


class ImageUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=Image.TITLE_MAX_LENGTH, required=False, allow_blank=True)
    description = serializers.CharField(max_length=Image.DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)
    tags = TagsField(required=False, help_text="replaces all tags: a list of names, or one comma-separated text")


class TextReadMatch(serializers.Serializer):
    line = serializers.CharField(help_text="a line of text read in the picture")
    matched_words = serializers.ListField(child=serializers.CharField(), help_text="its words that matched the query")


class SearchHitSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="1 is the best match")
    score = serializers.FloatField(
        allow_null=True,
        help_text="cosine similarity between the query and the image, -1..1; null for a hit only its words found "
        "(hits are in fused order: see `matched`) or an image a curator pinned that search did not rank itself",
    )
    matched = serializers.ChoiceField(
        choices=[LOOKS, WORDS, BOTH],
        help_text="what found the image: looks (CLIP), words (title, tags, description) or both",
    )
    pinned = serializers.BooleanField(help_text="placed here by a curator's pin for this query")
    text_read = serializers.SerializerMethodField(
        help_text="the lines read in the picture (OCR) that hold a word of the query, with the words that matched"
    )
    image = ImageSerializer()

    def to_representation(self, hit):
        """The fields above, written out as ImageSerializer does (a page of 16 hits)."""
        return {
            "rank": hit.rank, "score": hit.score, "matched": hit.matched, "pinned": hit.pinned,
            "text_read": self.get_text_read(hit), "image": self._image.to_representation(hit.image),
        }

    @cached_property
    def _image(self) -> ImageSerializer:
        # Not self.fields["image"]: binding the declared fields copies each of them, per request.
        return ImageSerializer(context=self.context)

    @extend_schema_field(TextReadMatch(many=True))
    def get_text_read(self, hit) -> list[dict]:
        return [
            {"line": "".join(word for word, _ in line), "matched_words": [word for word, hit_ in line if hit_]}
            for line in hit.text_read
        ]


class TextSearchSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=MAX_QUERY_LENGTH, help_text="what to look for, in words")
    ranking = serializers.ChoiceField(
        choices=RANKINGS,
        required=False,
        default="",
        allow_blank=True,
        help_text="hybrid (CLIP fused with full-text search), clip or keywords; SEARCH_RANKING when left out",
    )


class ImageSearchSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="the example image; it is never stored")


class CombinedSearchSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_QUERY_LENGTH, required=False, default="", allow_blank=True)
    file = serializers.FileField(required=False, help_text="an example image; never stored")
    text_weight = serializers.FloatField(default=1.0, min_value=0.0, max_value=10.0)
    image_weight = serializers.FloatField(default=1.0, min_value=0.0, max_value=10.0)
    negative_text = serializers.CharField(
        max_length=MAX_QUERY_LENGTH, required=False, default="", allow_blank=True, help_text='"but not ..."'
    )
    negative_weight = serializers.FloatField(default=DEFAULT_NEGATIVE_WEIGHT, min_value=0.0, max_value=10.0)


class IndexStatusSerializer(serializers.Serializer):
    version = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    built_at = serializers.DateTimeField(allow_null=True)
    searchable = serializers.IntegerField(help_text="visible images search finds now")
    fresh = serializers.IntegerField(help_text="of those, embedded since the index was built (not yet compacted into it)")
    waiting = serializers.IntegerField()
    failed = serializers.IntegerField()
    random_weights = serializers.BooleanField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()

from rest_framework import serializers

from gallery.models import Image
from gallery.search import MAX_QUERY_LENGTH


class ImageSerializer(serializers.ModelSerializer):
    page_url = serializers.SerializerMethodField(help_text="the image's page in the web UI")
    original_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id", "title", "description", "width", "height", "size_bytes", "uploaded_at", "status", "error",
            "hidden", "embedding_model", "embedded_at", "page_url", "original_url", "thumbnail_url",
        ]
        read_only_fields = fields

    def _absolute(self, url: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_page_url(self, image) -> str:
        return self._absolute(image.get_absolute_url())

    def get_original_url(self, image) -> str:
        return self._absolute(image.file.url)

    def get_thumbnail_url(self, image) -> str:
        return self._absolute(image.thumbnail.url)


class UploadedImageSerializer(ImageSerializer):
    created = serializers.BooleanField(help_text="false when the same bytes were already in the gallery")

    class Meta(ImageSerializer.Meta):
        fields = [*ImageSerializer.Meta.fields, "created"]
        read_only_fields = fields


class ImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JPEG, PNG, WebP, GIF, BMP or TIFF")
    title = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    description = serializers.CharField(required=False, default="", allow_blank=True)


class ImageUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)


class SearchHitSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="1 is the best match")
    score = serializers.FloatField(help_text="cosine similarity between the query and the image, -1..1")
    image = ImageSerializer()


class TextSearchSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=MAX_QUERY_LENGTH, help_text="what to look for, in words")


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
    negative_weight = serializers.FloatField(default=0.5, min_value=0.0, max_value=10.0)


class IndexStatusSerializer(serializers.Serializer):
    version = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    built_at = serializers.DateTimeField(allow_null=True)
    searchable = serializers.IntegerField()
    waiting = serializers.IntegerField()
    failed = serializers.IntegerField()
    random_weights = serializers.BooleanField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()



class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()

"""REST API for a member's saved searches: list, save, delete, and the matches found since.
Each member sees only their own; the same services as the /saved/ page."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from gallery import search
from gallery.api.pagination import CappedPagination, GalleryPagination
from gallery.api.permissions import CanView
from gallery.api.serializers import CombinedSearchSerializer, ImageSerializer
from gallery.api.views import BODY_ERRORS, READ_ERRORS, _valid
from gallery.http.throttles import SavedSearchThrottle
from gallery.models import SavedSearch, SavedSearchMatch
from gallery.search import saved_searches


class SavedSearchSerializer(serializers.ModelSerializer):
    has_image = serializers.SerializerMethodField(help_text="the query includes an example image (kept as its vector)")
    new_count = serializers.SerializerMethodField(help_text=f"matches found since you last looked, counted up to {saved_searches.NEW_COUNT_MAX}")
    new_count_more = serializers.SerializerMethodField(help_text=f"more than {saved_searches.NEW_COUNT_MAX} new matches")

    class Meta:
        model = SavedSearch
        fields = [
            "id", "name", "text", "text_weight", "has_image", "image_weight", "negative_text", "negative_weight",
            "created_at", "last_seen_at", "new_count", "new_count_more",
        ]
        read_only_fields = fields

    def get_has_image(self, saved) -> bool:
        return saved.image_vector is not None

    def get_new_count(self, saved) -> int:
        return min(saved.new_count, saved_searches.NEW_COUNT_MAX)

    def get_new_count_more(self, saved) -> bool:
        return saved.new_count > saved_searches.NEW_COUNT_MAX


class SaveSearchSerializer(CombinedSearchSerializer):
    name = serializers.CharField(max_length=saved_searches.NAME_MAX_LENGTH, required=False, default="", allow_blank=True)
    query = serializers.CharField(
        required=False, default="", allow_blank=True,
        help_text="instead of the fields: a signed query token, as in the web page's `?query=` link",
    )


class MatchSerializer(serializers.ModelSerializer):
    image = ImageSerializer()
    new = serializers.SerializerMethodField(help_text="found since you last looked")

    class Meta:
        model = SavedSearchMatch
        fields = ["image", "score", "found_at", "new"]
        read_only_fields = fields

    def get_new(self, match) -> bool:
        return saved_searches.is_new(self.context["saved"], match)


@extend_schema(tags=["saved searches"])
class SavedSearchViewSet(viewsets.GenericViewSet):
    """Your saved searches. After each index run, newly embedded images that match one (score
    at least SEARCH_WEAK_SCORE) are recorded as its matches."""

    serializer_class = SavedSearchSerializer
    permission_classes = [IsAuthenticated, CanView]
    pagination_class = GalleryPagination
    parser_classes = [MultiPartParser, FormParser]  # one content type, as search/combined: it may carry a file
    lookup_value_regex = r"\d+"
    queryset = SavedSearch.objects.none()  # for the schema; get_queryset() decides

    def get_queryset(self):
        return saved_searches.saved_searches_of(self.request.user)

    def get_throttles(self):
        return [SavedSearchThrottle()] if self.action == "create" else []

    @extend_schema(responses={200: SavedSearchSerializer(many=True), **READ_ERRORS})
    def list(self, request):
        # Counted and paged without their matches; only the page's searches count theirs (a
        # count of the annotated list would aggregate every match of every search once more).
        page = self.paginate_queryset(saved_searches.saved_searches_of(request.user, counted=False).only("pk"))
        counted = self.get_queryset().in_bulk([saved.pk for saved in page])
        return self.get_paginated_response(self.get_serializer([counted[saved.pk] for saved in page], many=True).data)

    @extend_schema(responses={200: SavedSearchSerializer, **READ_ERRORS})
    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request={"multipart/form-data": SaveSearchSerializer},
        responses={201: SavedSearchSerializer, **BODY_ERRORS, **READ_ERRORS},
    )
    def create(self, request):
        """Save a text, image or combined search (the fields of the combined search, or a query token).
        A member keeps at most SAVED_SEARCHES_PER_USER (400 past it) and saves at most
        API_SAVED_SEARCH_RATE (429 past it)."""
        data = _valid(SaveSearchSerializer, request.data)
        if data["query"]:
            query = search.SearchQuery.from_token(data["query"])
        else:
            query = search.SearchQuery.build(
                text=data["text"],
                image_file=data.get("file"),
                text_weight=data["text_weight"],
                image_weight=data["image_weight"],
                negative_text=data["negative_text"],
                negative_weight=data["negative_weight"],
            )
        saved = saved_searches.saved_search_create(user=request.user, query=query, name=data["name"])
        return Response(self.get_serializer(self.get_queryset().get(pk=saved.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, **READ_ERRORS})
    def destroy(self, request, pk=None):
        saved_searches.saved_search_delete(saved=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[OpenApiParameter("new", OpenApiTypes.BOOL, description="only matches found since you last looked")],
        responses={200: MatchSerializer(many=True), **READ_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def matches(self, request, pk=None):
        """Matches, newest first: the newest 1,000 (`count` stops there). Like the /saved/
        page, reading them marks them seen: the next `?new=true` lists only what is found after this."""
        saved, seen_at = self.get_object(), timezone.now()  # before reading: a match found meanwhile stays new
        new_only = request.query_params.get("new", "").lower() in ("1", "true", "yes")
        paginator = CappedPagination()
        matches = saved_searches.saved_search_matches(saved, new_only=new_only)  # the tags are in the image rows
        page = paginator.paginate_queryset(matches, request, view=self)
        data = MatchSerializer(page, many=True, context={"request": request, "saved": saved}).data
        saved_searches.saved_searches_mark_seen(searches=[saved], at=seen_at)
        return paginator.get_paginated_response(data)

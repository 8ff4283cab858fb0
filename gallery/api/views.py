"""REST API v1. Each view validates its input with a serializer, asks ``gallery.catalogue.access`` (through
the permission classes), calls the same services and search as the web pages, and serializes
the result; gallery errors become responses in ``gallery.api.exceptions``."""

from django.db.models import QuerySet
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from gallery import search
from gallery.api.authentication import token_expires_at
from gallery.api.filters import ImageFilter
from gallery.api.pagination import ImageListPagination, SearchPagination
from gallery.api.permissions import CanCurate, CanDelete, CanReindex, CanUpload, CanView
from gallery.api.serializers import (
    CombinedSearchSerializer,
    ErrorSerializer,
    ImageSearchSerializer,
    ImageSerializer,
    ImageUpdateSerializer,
    ImageUploadSerializer,
    IndexStatusSerializer,
    SearchHitSerializer,
    TextSearchSerializer,
    TokenSerializer,
    UploadedImageSerializer,
)
from gallery.catalogue import access, curation
from gallery.catalogue.filters import BrowseFilter
from gallery.catalogue.status import index_status
from gallery.catalogue.uploads import image_create
from gallery.http.throttles import SearchThrottle, UploadThrottle
from gallery.models import Image

ERROR = OpenApiResponse(ErrorSerializer, description="what is wrong, in `detail`")
INVALID = OpenApiResponse(OpenApiTypes.OBJECT, description="field name -> list of problems, or `detail`")
READ_ERRORS = {401: ERROR, 403: ERROR, 404: ERROR, 429: ERROR}
SEARCH_ERRORS = {
    **READ_ERRORS,
    400: INVALID,
    409: OpenApiResponse(ErrorSerializer, description="no index yet, or built with another model"),
    503: OpenApiResponse(ErrorSerializer, description="the model, storage or index is unavailable for a moment"),
}
RESULT_OPTIONS = [  # query parameters of every search (search.ResultOptions)
    OpenApiParameter("relevant", OpenApiTypes.BOOL, description="only the results that stand out from the query's own scores over the collection (no fixed threshold); what the words found stays"),
    OpenApiParameter("sort", OpenApiTypes.STR, enum=search.SORTS, description="relevance (default), or newest/oldest by date taken, over the relevant results"),
    OpenApiParameter("facets", OpenApiTypes.BOOL, description="add `facets`: how the results spread over years taken, cameras and tags"),
    # The gallery's filters, applied inside the search (gallery.search.filtered_search).
    OpenApiParameter("taken_after", OpenApiTypes.DATE, description="taken on or after this day"),
    OpenApiParameter("taken_before", OpenApiTypes.DATE, description="taken on or before this day"),
    *(
        OpenApiParameter(name, OpenApiTypes.STR, description=str(BrowseFilter.base_filters[name].extra.get("help_text", "")),
                         enum=[value for value, _ in BrowseFilter.base_filters[name].extra.get("choices", [])] or None)
        for name in ("camera", "has_location", "orientation", "tag", "tags", "tags_match", "hidden", "status")
    ),
]
BODY_ERRORS = {400: INVALID, 415: OpenApiResponse(ErrorSerializer, description="the body is not in the content type this operation takes")}


class _HitsPage:
    """Pages search hits with the pages' rule and size, and says when matches are weak."""

    pagination_class = SearchPagination

    def hits_response(self, query: search.SearchQuery):
        options = search.ResultOptions.from_params(self.request.query_params, user=self.request.user)
        results = search.search(query, options)
        paginator = SearchPagination()
        page = paginator.paginate_queryset(results, self.request, view=self)
        data = SearchHitSerializer(page, many=True, context={"request": self.request}).data
        facets = results.facets().as_dict() if options.facets else None
        return paginator.get_paginated_response(data, weak=results.weak, facets=facets)


@extend_schema(tags=["images"])
class ImageViewSet(_HitsPage, viewsets.GenericViewSet):
    """Images: list, read, upload, edit, hide, delete, and "more like this"."""

    serializer_class = ImageSerializer
    lookup_value_regex = r"\d+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = ImageFilter
    parser_classes = [MultiPartParser, JSONParser]  # uploads carry a file; edits are JSON
    queryset = Image.objects.none()  # for the schema; get_queryset() decides

    pagination_class = ImageListPagination

    def get_queryset(self) -> QuerySet[Image]:
        images = access.viewable_images(self.request.user)  # the tags are in the rows (Image.tag_name_list)
        # "More like this" starts from the image's vector: read with its row, not a second time.
        return images.defer(None) if self.action == "similar" else images

    def get_permissions(self):
        by_action = {"create": CanUpload, "partial_update": CanCurate, "hide": CanCurate, "unhide": CanCurate, "destroy": CanDelete}
        return [CanView(), by_action[self.action]()] if self.action in by_action else [CanView()]

    def get_throttles(self):
        if self.action == "create":
            return [UploadThrottle()]
        if self.action == "similar":
            return [SearchThrottle()]
        return []

    @extend_schema(responses={200: ImageSerializer(many=True), **READ_ERRORS, 400: INVALID})
    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={200: ImageSerializer, **READ_ERRORS})
    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request={"multipart/form-data": ImageUploadSerializer},
        responses={201: UploadedImageSerializer, **BODY_ERRORS, **READ_ERRORS, 409: ERROR, 503: ERROR},
        description="Upload a photo. The same bytes again return the existing image with `created: false`.",
    )
    def create(self, request):
        data = _valid(ImageUploadSerializer, request.data)
        image, created = image_create(
            file=data["file"], title=data["title"], description=data["description"], tags=data["tags"]
        )
        if not access.can_see(request.user, image):
            return Response({"detail": "This photo is already in the gallery."}, status=status.HTTP_409_CONFLICT)
        image.created = created
        return Response(UploadedImageSerializer(image, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request={"application/json": ImageUpdateSerializer}, responses={200: ImageSerializer, **BODY_ERRORS, **READ_ERRORS})
    def partial_update(self, request, pk=None):
        data = _valid(ImageUpdateSerializer, request.data)
        image = curation.image_update(
            image=self.get_object(), title=data.get("title"), description=data.get("description"), tags=data.get("tags")
        )
        return Response(self.get_serializer(image).data)

    @extend_schema(responses={204: None, **READ_ERRORS})
    def destroy(self, request, pk=None):
        curation.image_delete(image=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: ImageSerializer, **READ_ERRORS})
    @action(detail=True, methods=["post"])
    def hide(self, request, pk=None):
        """Hide from the gallery and from search (staff)."""
        return self._set_hidden(True)

    @extend_schema(request=None, responses={200: ImageSerializer, **READ_ERRORS})
    @action(detail=True, methods=["post"])
    def unhide(self, request, pk=None):
        return self._set_hidden(False)

    def _set_hidden(self, hidden):
        image = curation.image_update(image=self.get_object(), hidden=hidden)
        return Response(self.get_serializer(image).data)

    @extend_schema(parameters=RESULT_OPTIONS, responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS}, tags=["search"])
    @action(detail=True, methods=["get"], pagination_class=SearchPagination)  # ranked hits page by number, as search does
    def similar(self, request, pk=None):
        """More like this image, from its stored vector; it comes first itself."""
        return self.hits_response(search.SearchQuery.similar(self.get_object()))


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema(tags=["search"])
class TextSearchView(_HitsPage, GenericAPIView):
    """Search by text: ranked results with scores."""

    permission_classes = [CanView]
    throttle_classes = [SearchThrottle]
    serializer_class = SearchHitSerializer

    @extend_schema(parameters=[TextSearchSerializer, *RESULT_OPTIONS], responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS})
    def get(self, request):
        data = _valid(TextSearchSerializer, request.query_params)
        return self.hits_response(search.text_query(data["q"], ranking_name=data["ranking"]))


@extend_schema(tags=["search"])
class ImageSearchView(_HitsPage, GenericAPIView):
    """Search by an example image (multipart). The image is never stored."""

    permission_classes = [CanView]
    throttle_classes = [SearchThrottle]
    parser_classes = [MultiPartParser]
    serializer_class = SearchHitSerializer

    @extend_schema(
        request={"multipart/form-data": ImageSearchSerializer},
        parameters=RESULT_OPTIONS,
        responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS, **BODY_ERRORS},
    )
    def post(self, request):
        data = _valid(ImageSearchSerializer, request.data)
        return self.hits_response(search.SearchQuery.build(image_file=data["file"]))


@extend_schema(tags=["search"])
class CombinedSearchView(_HitsPage, GenericAPIView):
    """Text and image together with weights, optionally away from a negative text."""

    permission_classes = [CanView]
    throttle_classes = [SearchThrottle]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = SearchHitSerializer

    @extend_schema(
        request={"multipart/form-data": CombinedSearchSerializer},
        parameters=RESULT_OPTIONS,
        responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS, **BODY_ERRORS},
    )
    def post(self, request):
        data = _valid(CombinedSearchSerializer, request.data)
        return self.hits_response(
            search.SearchQuery.build(
                text=data["text"],
                image_file=data.get("file"),
                text_weight=data["text_weight"],
                image_weight=data["image_weight"],
                negative_text=data["negative_text"],
                negative_weight=data["negative_weight"],
            )
        )


@extend_schema(tags=["index"])
class IndexStatusView(GenericAPIView):
    """The current index version, how many images are searchable, waiting and failed."""

    permission_classes = [CanView]
    serializer_class = IndexStatusSerializer

    @extend_schema(responses={200: IndexStatusSerializer, **READ_ERRORS})
    def get(self, request):
        return Response(IndexStatusSerializer(index_status()).data)


@extend_schema(tags=["index"])
class IndexRefreshView(GenericAPIView):
    """Reindex now (`gallery.reindex_image` permission): queue the Airflow DAG, or embed and
    publish inline without Airflow."""

    permission_classes = [CanView, CanReindex]
    serializer_class = ErrorSerializer

    @extend_schema(request=None, responses={202: ErrorSerializer, **READ_ERRORS, 502: ERROR, 503: ERROR})
    def post(self, request):
        from gallery.indexing import index_refresh_now

        return Response({"detail": index_refresh_now()}, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["auth"])
class TokenView(ObtainAuthToken):
    """A token for programs: POST username and password, then send `Authorization: Token <key>`.
    It lasts API_TOKEN_LIFETIME_DAYS; DELETE (with the token) revokes it, and asking again after
    it expired gives a new one."""

    # Password guesses meet the one sign-in limit inside authenticate() (gallery.http.throttles).
    throttle_classes = []
    parser_classes = [JSONParser]  # ObtainAuthToken also takes forms: one content type for generated clients

    def get_permissions(self):
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    @extend_schema(responses={200: TokenSerializer, **BODY_ERRORS, 429: ERROR})
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        if token_expires_at(token) <= timezone.now():
            token.delete()
            token = Token.objects.create(user=user)
        return Response({"token": token.key, "expires_at": token_expires_at(token)})

    @extend_schema(request=None, responses={204: None, 401: ERROR, 403: ERROR})
    def delete(self, request, *args, **kwargs):
        """Revoke your token (every program using it must ask for a new one)."""
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

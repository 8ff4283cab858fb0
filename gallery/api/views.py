"""REST API v1. Each view validates its input with a serializer, calls the same services and
selectors as the web pages, and serializes the result."""

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response

from gallery import search, selectors
from gallery.api.filters import ImageFilter
from gallery.api.pagination import GalleryPagination
from gallery.api.permissions import CanRead, SearchThrottle, UploadThrottle
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
from gallery.models import Image
from gallery.uploads import (
    StorageUnavailable,
    UploadRejected,
    image_create,
    image_delete,
    image_update,
    images_set_hidden,
)
from indexer.embedding import ModelLoadError


class IndexNotReady(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "index_not_ready"


class StorageDown(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "storage_unavailable"


class ModelUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "model_unavailable"


ERROR = OpenApiResponse(ErrorSerializer, description="what is wrong, in `detail`")
INVALID = OpenApiResponse(OpenApiTypes.OBJECT, description="field name -> list of problems, or `detail`")
READ_ERRORS = {401: ERROR, 403: ERROR, 404: ERROR, 429: ERROR}
SEARCH_ERRORS = {**READ_ERRORS, 400: INVALID, 409: OpenApiResponse(ErrorSerializer, description="no index yet, or built with another model")}
BODY_ERRORS = {400: INVALID, 415: OpenApiResponse(ErrorSerializer, description="the body is not multipart/form-data (or JSON where allowed)")}


def _run_search(query):
    """Call a search selector, turning its errors into API errors."""
    try:
        return query()
    except search.BadQuery as exc:
        raise exceptions.ValidationError({"detail": str(exc)}) from None
    except search.SearchUnavailable as exc:
        raise IndexNotReady(str(exc)) from None
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from None


class _HitsPage:
    """Pages a list of search hits like a queryset."""

    pagination_class = GalleryPagination

    def hits_response(self, hits):
        page = self.paginate_queryset(hits)
        return self.get_paginated_response(SearchHitSerializer(page, many=True, context={"request": self.request}).data)


@extend_schema(tags=["images"])
class ImageViewSet(_HitsPage, viewsets.GenericViewSet):
    """Images: list, read, upload, edit, hide, delete, and "more like this"."""

    serializer_class = ImageSerializer
    lookup_value_regex = r"\d+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = ImageFilter
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    queryset = Image.objects.none()  # for the schema; get_queryset() decides

    def get_queryset(self) -> QuerySet[Image]:
        images = Image.objects.defer("embedding")
        return images if self.request.user.is_staff else images.filter(hidden=False)

    def get_permissions(self):
        if self.action == "create":
            return [IsAuthenticated()]
        if self.action in ("partial_update", "destroy", "hide", "unhide"):
            return [IsAdminUser()]
        return [CanRead()]

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
        responses={201: UploadedImageSerializer, **BODY_ERRORS, **READ_ERRORS, 503: ERROR},
        description="Upload a photo. The same bytes again return the existing image with `created: false`.",
    )
    def create(self, request):
        data = _valid(ImageUploadSerializer, request.data)
        try:
            image, created = image_create(file=data["file"], title=data["title"], description=data["description"])
        except UploadRejected as exc:
            raise exceptions.ValidationError({"file": [str(exc)]}) from None
        except StorageUnavailable as exc:
            raise StorageDown(str(exc)) from None
        image.created = created
        return Response(UploadedImageSerializer(image, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ImageUpdateSerializer, responses={200: ImageSerializer, **BODY_ERRORS, **READ_ERRORS})
    def partial_update(self, request, pk=None):
        data = _valid(ImageUpdateSerializer, request.data)
        image = image_update(image=self.get_object(), title=data.get("title"), description=data.get("description"))
        return Response(self.get_serializer(image).data)

    @extend_schema(responses={204: None, **READ_ERRORS})
    def destroy(self, request, pk=None):
        image_delete(image=self.get_object())
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
        image = self.get_object()
        images_set_hidden(images=Image.objects.filter(pk=image.pk), hidden=hidden)
        image.hidden = hidden
        return Response(self.get_serializer(image).data)

    @extend_schema(responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS}, tags=["search"])
    @action(detail=True, methods=["get"])
    def similar(self, request, pk=None):
        """More like this image, from its stored vector; it comes first itself."""
        image = self.get_object()
        return self.hits_response(_run_search(lambda: search.search_similar(image=Image.objects.get(pk=image.pk))))


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema(tags=["search"])
class TextSearchView(_HitsPage, GenericAPIView):
    """Search by text: ranked results with scores."""

    permission_classes = [CanRead]
    throttle_classes = [SearchThrottle]
    serializer_class = SearchHitSerializer

    @extend_schema(parameters=[TextSearchSerializer], responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS})
    def get(self, request):
        data = _valid(TextSearchSerializer, request.query_params)
        return self.hits_response(_run_search(lambda: search.search_by_text(text=data["q"])))


@extend_schema(tags=["search"])
class ImageSearchView(_HitsPage, GenericAPIView):
    """Search by an example image (multipart). The image is never stored."""

    permission_classes = [CanRead]
    throttle_classes = [SearchThrottle]
    parser_classes = [MultiPartParser]
    serializer_class = SearchHitSerializer

    @extend_schema(
        request={"multipart/form-data": ImageSearchSerializer},
        responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS, **BODY_ERRORS},
    )
    def post(self, request):
        data = _valid(ImageSearchSerializer, request.data)
        return self.hits_response(_run_search(lambda: search.search_by_image(file=data["file"])))


@extend_schema(tags=["search"])
class CombinedSearchView(_HitsPage, GenericAPIView):
    """Text and image together with weights, optionally away from a negative text."""

    permission_classes = [CanRead]
    throttle_classes = [SearchThrottle]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = SearchHitSerializer

    @extend_schema(
        request={"multipart/form-data": CombinedSearchSerializer},
        responses={200: SearchHitSerializer(many=True), **SEARCH_ERRORS, **BODY_ERRORS},
    )
    def post(self, request):
        data = _valid(CombinedSearchSerializer, request.data)
        return self.hits_response(
            _run_search(
                lambda: search.search_combined(
                    text=data["text"],
                    image_file=data.get("file"),
                    text_weight=data["text_weight"],
                    image_weight=data["image_weight"],
                    negative_text=data["negative_text"],
                    negative_weight=data["negative_weight"],
                )
            )
        )


@extend_schema(tags=["index"])
class IndexStatusView(GenericAPIView):
    """The current index version, how many images are searchable, waiting and failed."""

    permission_classes = [CanRead]
    serializer_class = IndexStatusSerializer

    @extend_schema(responses={200: IndexStatusSerializer, **READ_ERRORS})
    def get(self, request):
        return Response(IndexStatusSerializer(selectors.index_status()).data)


@extend_schema(tags=["index"])
class IndexRefreshView(GenericAPIView):
    """Reindex now (staff): queue the Airflow DAG, or embed and publish inline without Airflow."""

    permission_classes = [IsAdminUser]
    serializer_class = ErrorSerializer

    @extend_schema(request=None, responses={202: ErrorSerializer, **READ_ERRORS, 502: ERROR, 503: ERROR})
    def post(self, request):
        from gallery.airflow_api import AirflowUnavailable
        from gallery.indexing import index_refresh_now

        try:
            message = index_refresh_now()
        except AirflowUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
        except ModelLoadError as exc:
            raise ModelUnavailable(str(exc)) from None
        return Response({"detail": message}, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["auth"])
class TokenView(ObtainAuthToken):
    """A token for programs: POST username and password, then send `Authorization: Token <key>`."""

    @extend_schema(responses={200: TokenSerializer, **BODY_ERRORS})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

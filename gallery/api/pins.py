"""Curator pins over the API (``gallery.change_image``): list, read, create, change, delete.
The views validate, call ``gallery.search.pins``' service and serialize; search applies the pins."""

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from gallery.api.pagination import GalleryPagination
from gallery.api.permissions import CanCurate, CanView
from gallery.api.views import BODY_ERRORS, READ_ERRORS
from gallery.models import MAX_QUERY_LENGTH, PinnedImage, QueryPin
from gallery.search import pins

IDS_HELP = "image ids"


class PinSerializer(serializers.ModelSerializer):
    pinned = serializers.SerializerMethodField(help_text="image ids shown first for this query, in this order")
    excluded = serializers.SerializerMethodField(help_text="image ids never shown for this query")
    created_by = serializers.SerializerMethodField(help_text="the curator's user name")

    class Meta:
        model = QueryPin
        fields = ["id", "query", "pinned", "excluded", "created_by", "created_at", "updated_at"]
        read_only_fields = fields

    def get_pinned(self, pin) -> list[int]:
        return [placement.image_id for placement in pin.placements.all()]  # prefetched in order

    def get_excluded(self, pin) -> list[int]:
        return sorted(image.pk for image in pin.excluded.all())

    def get_created_by(self, pin) -> str | None:
        return pin.created_by.get_username() if pin.created_by else None


class PinInputSerializer(serializers.Serializer):
    query = serializers.CharField(max_length=MAX_QUERY_LENGTH, help_text='matched ignoring case and spaces: " Red  Shoes " is "red shoes"')
    pinned = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, help_text=IDS_HELP + ", first to last")
    excluded = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, help_text=IDS_HELP)


class PinChangeSerializer(PinInputSerializer):
    query = serializers.CharField(max_length=MAX_QUERY_LENGTH, required=False)


@extend_schema(tags=["pins"])
class PinViewSet(viewsets.GenericViewSet):
    """Curator pins: images first (in order) or never, for one text query."""

    serializer_class = PinSerializer
    permission_classes = [CanView, CanCurate]
    parser_classes = [JSONParser]
    lookup_value_regex = r"\d+"
    pagination_class = GalleryPagination
    queryset = QueryPin.objects.none()  # for the schema; get_queryset() decides

    def get_queryset(self) -> QuerySet[QueryPin]:
        query = self.request.query_params.get("query")
        return _pins().filter(query=pins.normalise_query(query)) if query else _pins()

    @extend_schema(
        parameters=[OpenApiParameter("query", str, description="only the pin of this query (normalised)")],
        responses={200: PinSerializer(many=True), **READ_ERRORS},
    )
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={200: PinSerializer, **READ_ERRORS})
    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=PinInputSerializer, responses={201: PinSerializer, **BODY_ERRORS, **READ_ERRORS})
    def create(self, request):
        data = _valid(PinInputSerializer, request.data)
        pin = pins.pin_save(query=data["query"], pinned=data.get("pinned", []), excluded=data.get("excluded", []), user=request.user)
        return Response(self._fresh(pin), status=status.HTTP_201_CREATED)

    @extend_schema(request=PinChangeSerializer, responses={200: PinSerializer, **BODY_ERRORS, **READ_ERRORS})
    def partial_update(self, request, pk=None):
        data = _valid(PinChangeSerializer, request.data)
        pin = pins.pin_save(
            pin=self.get_object(), query=data.get("query"), pinned=data.get("pinned"), excluded=data.get("excluded")
        )
        return Response(self._fresh(pin))

    @extend_schema(responses={204: None, **READ_ERRORS})
    def destroy(self, request, pk=None):
        self.get_object().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _fresh(self, pin: QueryPin) -> dict:
        return self.get_serializer(_pins().get(pk=pin.pk)).data


def _pins() -> QuerySet[QueryPin]:
    placements = Prefetch("placements", queryset=PinnedImage.objects.order_by("position", "pk"))
    return QueryPin.objects.select_related("created_by").prefetch_related(placements, "excluded")


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data

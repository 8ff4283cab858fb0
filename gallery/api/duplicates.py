"""REST API for near-duplicate groups (curators only): list the open groups, keep one image
of a group and hide the others. The same services as the admin's changelist."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from gallery.api.pagination import GalleryPagination
from gallery.api.permissions import CanCurate, CanView
from gallery.api.serializers import ImageSerializer
from gallery.api.views import BODY_ERRORS, READ_ERRORS, _valid
from gallery.indexing import duplicates
from gallery.models import DuplicateGroup, Image


class DuplicateGroupSerializer(serializers.ModelSerializer):
    members = ImageSerializer(many=True, read_only=True)
    kept = serializers.PrimaryKeyRelatedField(read_only=True, help_text="the image kept when the group was resolved")

    class Meta:
        model = DuplicateGroup
        fields = ["id", "created_at", "resolved", "resolved_at", "kept", "members"]
        read_only_fields = fields


class KeepSerializer(serializers.Serializer):
    image = serializers.IntegerField(help_text="id of the member to keep; the others are hidden")


class KeptSerializer(serializers.Serializer):
    hidden = serializers.IntegerField(help_text="how many images were hidden")
    group = DuplicateGroupSerializer()


@extend_schema(tags=["duplicates"])
class DuplicateGroupViewSet(viewsets.GenericViewSet):
    """Groups of near-duplicate images (resized, re-compressed or lightly edited copies), found
    after embedding. `?resolved=true` lists the resolved ones instead."""

    serializer_class = DuplicateGroupSerializer
    permission_classes = [CanView, CanCurate]
    pagination_class = GalleryPagination
    lookup_value_regex = r"\d+"
    queryset = DuplicateGroup.objects.none()  # for the schema; get_queryset() decides

    def get_queryset(self):
        resolved = self.request.query_params.get("resolved", "").lower() in ("1", "true", "yes")
        return DuplicateGroup.objects.filter(resolved=resolved).prefetch_related("members")

    @extend_schema(responses={200: DuplicateGroupSerializer(many=True), **READ_ERRORS})
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={200: DuplicateGroupSerializer, **READ_ERRORS})
    def retrieve(self, request, pk=None):
        group = get_object_or_404(DuplicateGroup.objects.prefetch_related("members"), pk=pk)
        return Response(self.get_serializer(group).data)

    @extend_schema(
        request={"application/json": KeepSerializer}, responses={200: KeptSerializer, **BODY_ERRORS, **READ_ERRORS}
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser])
    def keep(self, request, pk=None):
        """Keep this image, hide the others; the group is resolved."""
        group = get_object_or_404(DuplicateGroup, pk=pk)
        data = _valid(KeepSerializer, request.data)
        image = get_object_or_404(Image, pk=data["image"])
        hidden = duplicates.duplicates_keep(group=group, image=image)
        group = DuplicateGroup.objects.prefetch_related("members").get(pk=group.pk)
        context = {"request": request}
        return Response({"hidden": hidden, "group": DuplicateGroupSerializer(group, context=context).data})



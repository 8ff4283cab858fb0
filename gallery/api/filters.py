from datetime import timezone

import django_filters
from django import forms
from django.db.models import F, Q
from django_filters.fields import IsoDateTimeField

from gallery.models import Image
from gallery.tags import tag_lookup


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC: PostgreSQL refuses offsets beyond ±15:59 that ISO allows."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:
            raise forms.ValidationError("Enter a date and time between the years 1 and 9999.") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


ORIENTATIONS = {
    "landscape": Q(width__gt=F("height")),
    "portrait": Q(width__lt=F("height")),
    "square": Q(width=F("height")),
}


class BrowseFilter(django_filters.FilterSet):
    """What the gallery page and the API's image list both filter by, so that the same
    parameters give the same images on both. Dates are whole days in the gallery's time zone
    (TIME_ZONE), both ends included: ``taken_after=2024-06-01&taken_before=2024-06-30`` is June."""

    taken = django_filters.DateFromToRangeFilter(
        field_name="taken_at", label="taken", help_text="date taken (or uploaded, for photos without one): taken_after, taken_before (YYYY-MM-DD, included)"
    )
    camera = django_filters.CharFilter(method="filter_camera", help_text="camera model as the photo names it (any case), e.g. 'Pixel 7'")
    has_location = django_filters.BooleanFilter(method="filter_has_location", help_text="true: only photos with GPS coordinates; false: only without")
    orientation = django_filters.ChoiceFilter(choices=[(o, o) for o in ORIENTATIONS], method="filter_orientation")
    tag = django_filters.CharFilter(method="filter_tag", help_text="only images with this tag (its name or slug)")

    class Meta:
        model = Image
        fields = ["taken", "camera", "has_location", "orientation", "tag"]

    def filter_camera(self, queryset, name, value):
        return queryset.filter(camera_model__iexact=value.strip())

    def filter_has_location(self, queryset, name, value):
        return queryset.filter(latitude__isnull=not value)

    def filter_orientation(self, queryset, name, value):
        return queryset.filter(ORIENTATIONS[value])

    def filter_tag(self, queryset, name, value):
        tag = tag_lookup(value)
        return queryset.filter(tags=tag) if tag is not None else queryset.none()


class ImageFilter(BrowseFilter):
    """The API's image list: the gallery's filters, and the upload time, status and (for
    curators, who alone see hidden images) hidden."""

    uploaded_after = UtcIsoDateTimeFilter(field_name="uploaded_at", lookup_expr="gte")
    uploaded_before = UtcIsoDateTimeFilter(field_name="uploaded_at", lookup_expr="lte")

    class Meta(BrowseFilter.Meta):
        fields = ["status", "hidden", "uploaded_after", "uploaded_before", *BrowseFilter.Meta.fields]

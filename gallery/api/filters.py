from datetime import timezone

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from gallery.catalogue.filters import BrowseFilter


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


class ImageFilter(BrowseFilter):
    """The API's image list: the gallery's filters and the upload time. Unlike the gallery page,
    a curator's list holds hidden images unless ``hidden=false`` is asked for."""

    uploaded_after = UtcIsoDateTimeFilter(field_name="uploaded_at", lookup_expr="gte")
    uploaded_before = UtcIsoDateTimeFilter(field_name="uploaded_at", lookup_expr="lte")

    class Meta(BrowseFilter.Meta):
        fields = ["uploaded_after", "uploaded_before", *BrowseFilter.Meta.fields]

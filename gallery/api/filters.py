from datetime import timezone

import django_filters
from django import forms
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


class ImageFilter(django_filters.FilterSet):
    uploaded_after = UtcIsoDateTimeFilter(field_name="uploaded_at", lookup_expr="gte")
    uploaded_before = UtcIsoDateTimeFilter(field_name="uploaded_at", lookup_expr="lte")
    tag = django_filters.CharFilter(method="filter_tag", help_text="only images with this tag (its name or slug)")

    class Meta:
        model = Image
        fields = ["status", "hidden", "uploaded_after", "uploaded_before", "tag"]

    def filter_tag(self, queryset, name, value):
        tag = tag_lookup(value)
        return queryset.filter(tags=tag) if tag is not None else queryset.none()

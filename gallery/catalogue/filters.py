"""What the gallery can be narrowed by: one ``django-filter`` set for the gallery page, the
API's image list (``gallery.api.filters.ImageFilter`` adds its own) and every search
(``gallery.search.ResultOptions``), so the same parameters give the same images everywhere."""

import django_filters
from django.db.models import F, Q, QuerySet

from gallery.catalogue.tags import tag_lookup
from gallery.models import Image

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
    tags = django_filters.CharFilter(method="filter_tags", help_text="comma-separated tags: images with all of them (tags_match=all, the default) or any")
    tags_match = django_filters.ChoiceFilter(choices=[("all", "all"), ("any", "any")], method="filter_nothing", help_text="how `tags` combine")
    # Curators alone see hidden images (the queryset given holds them for curators only): pages
    # and search show the shown ones unless ``hidden`` is asked for (``shown_unless_asked``).
    hidden = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")], method="filter_hidden",
        help_text="curators: true for hidden images only, false for shown ones",
    )
    status = django_filters.ChoiceFilter(choices=Image.Status.choices, help_text="pending, indexed or failed")

    class Meta:
        model = Image
        fields = ["taken", "camera", "has_location", "orientation", "tag", "tags", "tags_match", "hidden", "status"]

    def filter_camera(self, queryset, name, value):
        return queryset.filter(camera_model__iexact=value.strip())

    def filter_has_location(self, queryset, name, value):
        return queryset.filter(latitude__isnull=not value)

    def filter_orientation(self, queryset, name, value):
        return queryset.filter(ORIENTATIONS[value])

    def filter_tag(self, queryset, name, value):
        tag = tag_lookup(value)
        return queryset.filter(tags=tag) if tag is not None else queryset.none()

    def filter_tags(self, queryset, name, value):
        found = [tag_lookup(part.strip()) for part in value.split(",") if part.strip()]
        if self.form.cleaned_data.get("tags_match") == "any":
            known = [tag.pk for tag in found if tag is not None]
            return queryset.filter(pk__in=Image.tags.through.objects.filter(tag__in=known).values("image_id"))
        if None in found:  # all of them, and one is no tag at all
            return queryset.none()
        for tag in found:
            queryset = queryset.filter(tags=tag)
        return queryset

    def filter_hidden(self, queryset, name, value):
        return queryset.filter(hidden=value == "true")

    def filter_nothing(self, queryset, name, value):
        return queryset  # read by filter_tags

    @property
    def given(self) -> bool:
        """Whether any filter was asked for (a search without one searches everything)."""
        return any(self.data.get(name) for name in (*self.base_filters, "taken_after", "taken_before") if name != "tags_match")


def browse_params(params) -> tuple[tuple[str, str], ...]:
    """The filters' own parameters among ``params`` (a query string), those given, in a fixed
    order: what selects the images, as a value to keep or to key a cache by."""
    names = sorted((*BrowseFilter.base_filters, "taken_after", "taken_before"))
    return tuple((name, params.get(name)) for name in names if params.get(name))


def shown_unless_asked(images: QuerySet[Image], params, *, curator: bool) -> QuerySet[Image]:
    """``images`` without hidden ones, unless a curator asks about ``hidden`` (``hidden=true``
    then keeps the hidden ones, ``hidden=false`` the others; any other value is the filter
    form's 400): the one rule for the gallery page and every search."""
    return images if curator and params.get("hidden") in ("true", "false") else images.visible()

from django.conf import settings
from django.core.paginator import Paginator
from django.utils.functional import cached_property
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination


class GalleryPagination(PageNumberPagination):
    """SEARCH_PAGE_SIZE per page like the web pages (one rule: a page that is not there is a
    404 on both); ``page_size`` up to API_MAX_PAGE_SIZE."""

    page_size_query_param = "page_size"

    @property
    def page_size(self):
        return settings.SEARCH_PAGE_SIZE

    @property
    def max_page_size(self):
        return settings.API_MAX_PAGE_SIZE


class CappedPaginator(Paginator):
    """Pages over the first ``cap`` rows of a queryset: the count stops there (``COUNT`` over a
    ``LIMIT``), so counting reads at most ``cap + 1`` rows however many there are."""

    cap = 1000

    @cached_property
    def seen(self) -> int:
        return self.object_list[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self.seen, self.cap)


class CappedPagination(GalleryPagination):
    """GalleryPagination over the first CappedPaginator.cap rows of a list (newest first), with
    ``count_more``: there are more than those."""

    django_paginator_class = CappedPaginator

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count_more"] = self.page.paginator.seen > self.page.paginator.cap
        return response

    def get_paginated_response_schema(self, schema):
        wrapped = super().get_paginated_response_schema(schema)
        wrapped["properties"]["count_more"] = {"type": "boolean", "description": "more than `count` rows: the list stops there"}
        return wrapped


class SearchPagination(GalleryPagination):
    """Adds ``weak_match`` (nothing stands out) and, when asked, ``facets``."""

    def get_paginated_response(self, data, weak=False, facets=None):
        response = super().get_paginated_response(data)
        response.data["weak_match"] = weak
        if facets is not None:
            response.data["facets"] = facets
        return response

    def get_paginated_response_schema(self, schema):
        wrapped = super().get_paginated_response_schema(schema)
        wrapped["properties"]["weak_match"] = {"type": "boolean", "description": "even the best match is poor"}
        counts = {"type": "object", "additionalProperties": {"type": "integer"}}
        wrapped["properties"]["facets"] = {
            "type": "object",
            "description": "with facets=true: how the results spread over years and months taken (`2023-08`), cameras and tags (counts, largest first)",
            "properties": {"years": counts, "months": counts, "cameras": counts, "tags": counts},
        }
        return wrapped


class ImageListPagination(CursorPagination):
    """The gallery, newest first, in keyset pages, for the API's image list and the web grid
    alike: ``next`` and ``previous`` carry a cursor (DRF's ``CursorPagination``), so a deep
    page costs what the first does and no request counts the gallery. SEARCH_PAGE_SIZE per
    page; ``page_size`` up to API_MAX_PAGE_SIZE. A damaged cursor is a 404."""

    # ?order=: newest uploads first (index image_newest_first), or the timeline, newest taken
    # first (index image_timeline). Ties share a timestamp only.
    orderings = {"uploaded": ("-uploaded_at", "-pk"), "taken": ("-taken_at", "-pk")}
    ordering = orderings["uploaded"]
    page_size_query_param = "page_size"

    def get_ordering(self, request, queryset, view):
        order = request.query_params.get("order") or "uploaded"
        if order not in self.orderings:
            raise ValidationError({"order": [f"Choose one of: {', '.join(self.orderings)}."]})
        return self.orderings[order]

    def get_page_size(self, request):
        self.page_size, self.max_page_size = settings.SEARCH_PAGE_SIZE, settings.API_MAX_PAGE_SIZE
        return super().get_page_size(request)

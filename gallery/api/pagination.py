from django.conf import settings
from rest_framework.pagination import PageNumberPagination


class GalleryPagination(PageNumberPagination):
    """16 per page like the web pages; ``page_size`` up to API_MAX_PAGE_SIZE."""

    page_size = 16
    page_size_query_param = "page_size"

    @property
    def max_page_size(self):
        return settings.API_MAX_PAGE_SIZE

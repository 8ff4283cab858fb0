from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from gallery.api import duplicates, pins, saved_searches, views

router = SimpleRouter()
router.register("images", views.ImageViewSet, basename="image")
router.register("pins", pins.PinViewSet, basename="pin")
router.register("duplicates", duplicates.DuplicateGroupViewSet, basename="duplicate")
router.register("saved-searches", saved_searches.SavedSearchViewSet, basename="saved-search")

app_name = "api"
urlpatterns = [
    path("v1/", include(router.urls)),
    path("v1/search/", views.TextSearchView.as_view(), name="search-text"),
    path("v1/search/image/", views.ImageSearchView.as_view(), name="search-image"),
    path("v1/search/combined/", views.CombinedSearchView.as_view(), name="search-combined"),
    path("v1/index/", views.IndexStatusView.as_view(), name="index-status"),
    path("v1/index/refresh/", views.IndexRefreshView.as_view(), name="index-refresh"),
    path("v1/auth/token/", views.TokenView.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

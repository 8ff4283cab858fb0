from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("gallery.api.urls")),
    path("", include("gallery.urls")),
]

if settings.GALLERY_SERVE_MEDIA:
    # The local media folder, served by the app itself (object storage serves its own URLs).
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]

handler404 = "gallery.views.page_not_found"

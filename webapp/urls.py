from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path, re_path

from gallery.web.views import SignInView, media

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("api/", include("gallery.api.urls")),
    path("", include("gallery.urls")),
]

if settings.GALLERY_SERVE_MEDIA:
    # The local media folder, served by the app through the access policy (object storage
    # serves its own presigned URLs, which only people who may see an image are given).
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", media, name="media")]

handler400 = "gallery.web.views.bad_request"
handler404 = "gallery.web.views.page_not_found"

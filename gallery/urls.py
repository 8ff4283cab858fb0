from django.urls import path

from gallery.web import saved_search_pages, views

app_name = "gallery"
urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("search/", views.search_results, name="search"),
    path("search/image/", views.search_by_image, name="search-by-image"),
    path("images/<int:pk>/", views.image_detail, name="image-detail"),
    path("images/<int:pk>/curate/", views.image_curate, name="image-curate"),
    path("upload/", views.upload, name="upload"),
    path("saved/", saved_search_pages.saved_list, name="saved-searches"),
    path("saved/<int:pk>/delete/", saved_search_pages.saved_delete, name="saved-search-delete"),
]

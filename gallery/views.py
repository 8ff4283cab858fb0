"""Server-rendered pages. Each view reads its input, calls a service or selector, renders."""

import secrets

import numpy as np
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from gallery import clip, search
from gallery.forms import ImageSearchForm, TextSearchForm, UploadForm
from gallery.models import Image
from gallery.selectors import gallery_images
from gallery.uploads import UploadRejected, image_create

# Query-image vectors live in the session (never the image), so results can be paged.
SESSION_QUERIES = "image_queries"
SESSION_QUERIES_KEPT = 5


def _page(request, items):
    """A page of 16; a missing or bad page number gives the first or last page."""
    return Paginator(items, settings.SEARCH_PAGE_SIZE).get_page(request.GET.get("page"))


def _other_params(request) -> str:
    """The query string without ``page``, for the pager's links."""
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode() + "&" if params else ""


def gallery(request):
    return render(request, "gallery/gallery.html", {"page": _page(request, gallery_images())})


def search_results(request):
    form = TextSearchForm(request.GET)
    text = request.GET.get("q", "")
    token = request.GET.get("image", "")
    hits, error, status = [], "", 200
    try:
        if token:
            vector, model_id = _session_query(request, token)
            hits = search.search_by_vector(vector, model_id=model_id)
        else:
            hits = search.search_by_text(text=text)
    except search.BadQuery as exc:
        error, status = str(exc), 400
    except search.SearchUnavailable as exc:
        error = str(exc)
    context = {
        "form": form,
        "query": text,
        "image_token": token,
        "page": _page(request, hits),
        "extra": _other_params(request),
        "error": error,
    }
    return render(request, "gallery/search.html", context, status=status)


@require_POST
def search_by_image(request):
    form = ImageSearchForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose an image file to search with.")
        return redirect("gallery:gallery")
    try:
        vector = search.embed_query_image(file=form.cleaned_data["file"])
    except search.BadQuery as exc:
        return render(request, "gallery/search.html", {"error": str(exc), "page": None}, status=400)
    token = secrets.token_urlsafe(8)
    queries = request.session.get(SESSION_QUERIES, {})
    queries[token] = {"vector": vector.tolist(), "model": clip.embedder().model_id}
    request.session[SESSION_QUERIES] = dict(list(queries.items())[-SESSION_QUERIES_KEPT:])
    return redirect(f"{reverse('gallery:search')}?image={token}")


def _session_query(request, token):
    query = request.session.get(SESSION_QUERIES, {}).get(token)
    if query is None:
        raise search.BadQuery("That image search has expired; search with the image again.")
    return np.asarray(query["vector"], dtype=np.float32), query["model"]


def image_detail(request, pk):
    images = Image.objects.all() if request.user.is_staff else Image.objects.filter(hidden=False)
    image = get_object_or_404(images, pk=pk)
    similar, error = [], ""
    try:
        similar = search.search_similar(image=image)
    except search.SearchUnavailable as exc:
        error = str(exc)
    return render(request, "gallery/image_detail.html", {"image": image, "page": _page(request, similar), "error": error})


def upload(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            image, created = image_create(file=data["file"], title=data["title"], description=data["description"])
        except UploadRejected as exc:
            form.add_error("file", str(exc))
        else:
            if created:
                messages.success(request, f"Added “{image}”. It becomes searchable after the next index run.")
            else:
                messages.info(request, f"This photo is already in the gallery as “{image}”.")
            return redirect(image)
    if request.method == "POST":
        status = 400
    return render(request, "gallery/upload.html", {"form": form}, status=status)


def page_not_found(request, exception):
    """API clients get JSON even for URLs no API view matched; people get a page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "gallery/404.html", status=404)

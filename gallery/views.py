"""Server-rendered pages. Each view reads its input, calls a service or selector, renders.

Every page works without JavaScript; ``static/gallery/gallery.js`` adds drag-and-drop, paste,
previews and per-file upload progress on top.
"""

import secrets

import numpy as np
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from gallery import clip, search
from gallery.forms import ImageSearchForm, UploadForm
from gallery.models import Image
from gallery.selectors import gallery_images
from gallery.uploads import StorageUnavailable, UploadRejected, image_create, image_delete, images_set_hidden

# Query vectors (never the images) live in the session, so image results can be paged.
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
    text = request.GET.get("q", "")
    token = request.GET.get("image", "")
    hits, error, status, label = [], "", 200, ""
    try:
        if token:
            vector, model_id, label = _session_query(request, token)
            hits = search.search_by_vector(vector, model_id=model_id)
        else:
            hits = search.search_by_text(text=text)
    except search.BadQuery as exc:
        error, status = str(exc), 400
    except search.SearchUnavailable as exc:
        error = str(exc)
    context = {
        "query": "" if token else text,
        "image_token": token,
        "query_label": label,
        "page": _page(request, hits),
        "extra": _other_params(request),
        "error": error,
        "weak": bool(hits) and hits.best_score < settings.SEARCH_WEAK_SCORE,
    }
    return render(request, "gallery/search.html", context, status=status)


@require_POST
def search_by_image(request):
    """Image, text and "but not" text together: embed, keep the vector, show the results."""
    form = ImageSearchForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "gallery/search.html", {"error": " ".join(form.errors.get("__all__", [])) or "Check the search fields.", "page": None}, status=400)
    data = form.cleaned_data
    image_share = (50 if data["balance"] is None else data["balance"]) / 100
    try:
        vector = search.combined_query_vector(
            text=data["q"] or "",
            image_file=data["file"],
            text_weight=1 - image_share,
            image_weight=image_share,
            negative_text=data["negative"] or "",
        )
    except search.BadQuery as exc:
        return render(request, "gallery/search.html", {"error": str(exc), "page": None}, status=400)
    label = _describe(data)
    token = secrets.token_urlsafe(8)
    queries = request.session.get(SESSION_QUERIES, {})
    queries[token] = {"vector": vector.tolist(), "model": clip.embedder().model_id, "label": label}
    request.session[SESSION_QUERIES] = dict(list(queries.items())[-SESSION_QUERIES_KEPT:])
    return redirect(f"{reverse('gallery:search')}?{urlencode({'image': token})}")


def _describe(data) -> str:
    parts = []
    if data["file"]:
        parts.append("your image" if not data["q"] else f"your image ({data['balance'] if data['balance'] is not None else 50}%)")
    if data["q"]:
        parts.append(f"“{data['q']}”")
    label = " + ".join(parts)
    return f"{label}, but not “{data['negative']}”" if data["negative"] else label


def _session_query(request, token):
    query = request.session.get(SESSION_QUERIES, {}).get(token)
    if query is None:
        raise search.BadQuery("That image search has expired; search with the image again.")
    return np.asarray(query["vector"], dtype=np.float32), query["model"], query.get("label", "your image")


def image_detail(request, pk):
    images = Image.objects.all() if request.user.is_staff else Image.objects.filter(hidden=False)
    image = get_object_or_404(images, pk=pk)
    similar, error = [], ""
    try:
        similar = search.search_similar(image=image)
    except search.SearchUnavailable as exc:
        error = str(exc)
    return render(request, "gallery/image_detail.html", {"image": image, "page": _page(request, similar), "error": error})


@staff_member_required
@require_POST
def image_curate(request, pk):
    image = get_object_or_404(Image, pk=pk)
    action = request.POST.get("action")
    if action == "delete":
        image_delete(image=image)
        messages.success(request, f"Deleted “{image}”.")
        return redirect("gallery:gallery")
    if action in ("hide", "unhide"):
        images_set_hidden(images=Image.objects.filter(pk=pk), hidden=action == "hide")
        messages.success(request, f"“{image}” is {'hidden' if action == 'hide' else 'visible again'}.")
    return redirect(image)


def upload(request):
    """One or many photos. Browsers with JavaScript send one file per request and read JSON,
    to show progress per file; without it the page shows a summary."""
    form = UploadForm(request.POST if request.method == "POST" else None)
    if request.method != "POST":
        return render(request, "gallery/upload.html", {"form": form})
    files = request.FILES.getlist("files")
    if not form.is_valid() or not files:
        if not files:
            form.add_error(None, "Choose at least one photo.")
        return _upload_response(request, form, [], status=400)
    title = form.cleaned_data["title"] if len(files) == 1 else ""
    results = [_upload_one(upload, title, form.cleaned_data["description"]) for upload in files]
    added = [r for r in results if r["outcome"] == "added"]
    status = 200
    if all(r["outcome"] == "rejected" for r in results):
        status = 503 if any(r.get("retry") for r in results) else 400
    if len(results) == 1 and added and not _wants_json(request):
        messages.success(request, f"Added “{added[0]['title']}”. It becomes searchable after the next index run.")
        return redirect(added[0]["url"])
    return _upload_response(request, form, results, status=status)


def _upload_one(file, title, description) -> dict:
    result = {"name": file.name}
    try:
        image, created = image_create(file=file, title=title, description=description)
    except (UploadRejected, StorageUnavailable) as exc:
        return result | {"outcome": "rejected", "reason": str(exc), "retry": isinstance(exc, StorageUnavailable)}
    return result | {"outcome": "added" if created else "present", "url": image.get_absolute_url(), "title": str(image)}


def _wants_json(request) -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


def _upload_response(request, form, results, *, status):
    if _wants_json(request):
        errors = [str(e) for e in form.non_field_errors()] + [f"{k}: {' '.join(v)}" for k, v in form.errors.items() if k != "__all__"]
        return JsonResponse({"results": results, "errors": errors}, status=status)
    return render(request, "gallery/upload.html", {"form": form, "results": results}, status=status)


def page_not_found(request, exception):
    """API clients get JSON even for URLs no API view matched; people get a page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "gallery/404.html", status=404)

"""Server-rendered pages. Each view asks ``gallery.catalogue.access``, reads its input, calls the same
services and search as the API, and renders; a gallery error is rendered with the status the
API would answer (``gallery.errors.http_status``).

Every page works without JavaScript; ``static/gallery/gallery.js`` adds drag-and-drop, paste,
previews, and uploads through the REST API with per-file progress on top.
"""

from __future__ import annotations

import calendar
import mimetypes
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import urlencode
from django.views.decorators.http import require_POST
from rest_framework.exceptions import AuthenticationFailed, NotFound, ValidationError
from rest_framework.request import Request

from gallery import search
from gallery.api.authentication import media_user
from gallery.api.pagination import ImageListPagination
from gallery.catalogue import access, curation, tags
from gallery.catalogue.filters import ORIENTATIONS, BrowseFilter, browse_params
from gallery.catalogue.listing import gallery_images
from gallery.catalogue.uploads import image_create
from gallery.errors import GalleryError, PageNotFound, http_status, public_message
from gallery.http.request_limits import BodyTooLarge
from gallery.http.throttles import SearchThrottle, UploadThrottle, throttled
from gallery.models import Image, ImageText
from gallery.search import facets
from gallery.search.facets import Facets
from gallery.search.ranking import RANKINGS
from gallery.web.forms import ImageSearchForm, UploadForm


def viewers_only(view):
    """Pages for people who may read the gallery (everyone, unless GALLERY_REQUIRE_LOGIN)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not access.can_view(request.user):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def _too_many(request, wait: float):
    response = render(request, "gallery/error.html", {"error": "Too many requests; please wait a moment."}, status=429)
    response["Retry-After"] = str(int(wait) + 1)
    return response


def _page(request, items):
    return search.paginate(items, request.GET.get("page"))


def _other_params(request, drop=("page",)) -> str:
    """The query string without the pager's own parameters, for the pager's links."""
    params = request.GET.copy()
    for name in drop:
        params.pop(name, None)
    return params.urlencode() + "&" if params else ""


RESULT_VIEWS = [  # (label, relevant, sort): the links above the results
    ("all results, best first", False, "relevance"),
    ("relevant only", True, "relevance"),
    ("relevant, newest taken first", True, "newest"),
    ("relevant, oldest taken first", True, "oldest"),
]


def _result_views(request, current: search.ResultOptions) -> list[tuple[str, str, bool]]:
    """(label, query string, is current) for each way to show these results."""
    views = []
    for label, relevant, sort in RESULT_VIEWS:
        params = request.GET.copy()
        for name in ("page", "relevant", "sort"):
            params.pop(name, None)
        params.update(search.ResultOptions(relevant=relevant, sort=sort).as_params())
        views.append((label, params.urlencode(), (current.relevant, current.sort) == (relevant, sort)))
    return views


def _refine_links(request, facets: Facets) -> list[tuple[str, list[tuple[str, int, str]]]]:
    """(facet, [(value, count, query string that narrows the results to it)]) for the page:
    years, or the months when every result is of one year; cameras; tags."""
    def narrowed(**params) -> str:
        query = request.GET.copy()
        for name in ("page", "cursor"):
            query.pop(name, None)
        for name, value in params.items():
            query[name] = value
        return query.urlencode()

    def month_range(month: str) -> dict:
        year, number = (int(part) for part in month.split("-"))
        last = calendar.monthrange(year, number)[1]
        return {"taken_after": f"{month}-01", "taken_before": f"{month}-{last:02d}"}

    dates = (
        ("Month", [(month, n, narrowed(**month_range(month))) for month, n in sorted(facets.months.items(), reverse=True)])
        if len(facets.years) == 1
        else ("Year", [(year, n, narrowed(taken_after=f"{year}-01-01", taken_before=f"{year}-12-31")) for year, n in facets.years.items()])
    )
    links = [
        dates,
        ("Camera", [(camera, n, narrowed(camera=camera)) for camera, n in facets.cameras.items()]),
        ("Tag", [(tag, n, narrowed(tags=tag, tags_match="all")) for tag, n in facets.tags.items()]),
    ]
    return [(label, values) for label, values in links if values]


def _failure(request, exc: Exception, template: str, context: dict):
    """A gallery error rendered on its page, with the status the API answers for it."""
    status = http_status(exc)
    if status is None:
        raise exc
    return render(request, template, {**context, "error": public_message(exc)}, status=status)


@viewers_only
def gallery(request):
    """The grid: newest uploads first, or the timeline (``?order=taken``: newest taken first,
    under month headings), narrowed by the API image list's own filters (date taken, camera,
    location, orientation, tag: ``gallery.catalogue.filters.BrowseFilter``)."""
    filters = BrowseFilter(request.GET, queryset=gallery_images(request.user, request.GET))
    timeline = request.GET.get("order") == "taken"
    other_order = request.GET.copy()
    other_order.pop("cursor", None)
    other_order["order"] = "uploaded" if timeline else "taken"
    context = {
        "filters": filters.form,
        **_filter_choices(request),
        "filter_keep": [(name, request.GET[name]) for name in ("order", "tag") if request.GET.get(name)],
        "timeline": timeline,
        "other_order": other_order.urlencode(),
        "filtered": filters.given,
        "tag_name": _tag_heading(request.GET.get("tag", "").strip()),
        "extra": _other_params(request, drop=("page", "cursor")),
        "paged": "cursor" in request.GET,
    }
    if not filters.is_valid():
        return render(request, "gallery/gallery.html", context, status=400)
    # The API's keyset pages (a cursor in ``?cursor=``): no OFFSET, no count of the gallery.
    paginator = ImageListPagination()
    try:
        rows = paginator.paginate_queryset(filters.qs, Request(request))
    except NotFound:
        raise Http404("There is no such page of this gallery.") from None
    except ValidationError as exc:  # an order there is not
        return render(request, "gallery/gallery.html", {**context, "error": " ".join(exc.detail["order"])}, status=400)
    context.update(images=rows, newer=paginator.get_previous_link(), older=paginator.get_next_link())
    if filters.given or timeline:  # what the filters can narrow to, on the id sample (gallery.search.facets)
        spread = facets.of_gallery(filters.qs, key=repr((browse_params(request.GET), access.can_curate(request.user))))
        context.update(refine=_refine_links(request, spread), refine_estimated=spread.estimated)
    return render(request, "gallery/gallery.html", context)


def _filter_choices(request) -> dict:
    """What the filter form (``_filters.html``) offers: curators also filter by hidden."""
    return {"orientations": list(ORIENTATIONS), "curator": access.can_curate(request.user), "statuses": Image.Status.choices}


def _tag_heading(asked: str) -> str:
    """The tag's own name ("seaside" for ?tag=Seaside), or what was asked when no tag has it."""
    tag = tags.tag_lookup(asked) if asked else None
    return tag.name if tag is not None else asked


@viewers_only
def search_results(request):
    """Text search (``?q=``), or the results of an image search (``?query=`` token)."""
    text, token = request.GET.get("q", ""), request.GET.get("query", "")
    ranking_name = request.GET.get("ranking", "")
    context = {
        "query": "" if token else text,
        "query_token": token,
        "extra": _other_params(request),
        "ranking": ranking_name or settings.SEARCH_RANKING,
        "rankings": RANKINGS,
        **_filter_choices(request),
        "filter_keep": [(name, request.GET[name]) for name in ("q", "query", "ranking", "relevant", "sort") if request.GET.get(name)],
    }
    if wait := throttled(request, SearchThrottle):
        return _too_many(request, wait)
    try:
        options = search.ResultOptions.from_params(request.GET, user=request.user, facets=True)  # the refine links
        context |= {"options": options, "views": _result_views(request, options)}
        query = search.SearchQuery.from_token(token) if token else search.text_query(text, ranking_name=ranking_name)
        context["query_label"] = query.describe()
        results = search.search(query, options)
        context |= {"page": _page(request, results), "weak": results.weak, "relevant": results.relevant}
        context["refine"] = _refine_links(request, results.facets())
    except GalleryError as exc:
        return _failure(request, exc, "gallery/search.html", context)
    return render(request, "gallery/search.html", context)


@viewers_only
@require_POST
def search_by_image(request):
    """Image, text and "but not" text together: embed the image, then show the results at a
    URL that carries the query (signed), so they can be paged and reloaded."""
    if wait := throttled(request, SearchThrottle):
        return _too_many(request, wait)
    form = ImageSearchForm(request.POST, request.FILES)
    if not form.is_valid():
        error = " ".join(message for messages_ in form.errors.values() for message in messages_)
        return render(request, "gallery/search.html", {"error": error or "Check the search fields."}, status=400)
    try:
        query = search.SearchQuery.build(**form.query_arguments())
    except GalleryError as exc:
        return _failure(request, exc, "gallery/search.html", {})
    return redirect(f"{reverse('gallery:search')}?{urlencode({'query': query.to_token()})}")


@viewers_only
def image_detail(request, pk):
    # With its vector (deferred in lists): "more like this" starts from it, without a second read.
    image = get_object_or_404(access.viewable_images(request.user).defer(None), pk=pk)
    context = {"image": image, "can_curate": access.can_curate(request.user), "can_delete": access.can_delete(request.user)}
    # Whether OCR has looked at this picture, so "no text" and "not read yet" can be told apart.
    context |= {"text_read": ImageText.objects.filter(image=image, source=image.file.name).exists(), "ocr_enabled": settings.OCR_ENABLED}
    try:
        context["page"] = _page(request, search.search(search.SearchQuery.similar(image)))
    except PageNotFound:
        raise Http404("No such page of similar images.") from None
    except GalleryError as exc:  # the image itself is still worth showing
        context["similar_error"] = public_message(exc)
    return render(request, "gallery/image_detail.html", context)


@require_POST
def image_curate(request, pk):
    action = request.POST.get("action")
    allowed = access.can_delete if action == "delete" else access.can_curate
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("gallery:image-detail", args=[pk]))
    if action not in ("delete", "hide", "unhide") or not allowed(request.user):
        return render(request, "gallery/error.html", {"error": "You may not do that."}, status=403)
    image = get_object_or_404(access.viewable_images(request.user), pk=pk)
    if action == "delete":
        curation.image_delete(image=image)
        messages.success(request, f"Deleted “{image}”.")
        return redirect("gallery:gallery")
    curation.image_update(image=image, hidden=action == "hide")
    messages.success(request, f"“{image}” is {'hidden' if action == 'hide' else 'visible again'}.")
    return redirect(image)


def upload(request):
    """One or many photos. With JavaScript the page's script sends each file to the REST API
    (the one upload contract) and shows progress; without it, this view stores them and shows
    what happened to each."""
    if not access.can_upload(request.user):
        return redirect_to_login(request.get_full_path())
    form = UploadForm(request.POST if request.method == "POST" else None, request.FILES or None)
    if request.method != "POST":
        return render(request, "gallery/upload.html", {"form": form})
    if not form.is_valid():
        return render(request, "gallery/upload.html", {"form": form}, status=400)
    # Each file counts against the upload limit, as it would through the API; the files past it
    # are refused with the wait, the ones before it stored.
    results = []
    for file in form.cleaned_data["files"]:
        if wait := throttled(request, UploadThrottle):
            if not results:
                return _too_many(request, wait)
            results.append({"name": file.name, "outcome": "rejected", "reason": f"Too many uploads; wait {int(wait) + 1} s and send this one again."})
            continue
        results.append(_upload_one(request, file, form))
    if len(results) == 1 and results[0]["outcome"] == "added":
        messages.success(request, f"Added “{results[0]['title']}”. It becomes searchable after the next index run.")
        return redirect(results[0]["url"])
    status = 400 if all(r["outcome"] == "rejected" for r in results) else 200
    # All refused: keep what was typed, so the person can pick other files and send again.
    form = form if status == 400 else UploadForm()
    return render(request, "gallery/upload.html", {"form": form, "results": results}, status=status)


def _upload_one(request, file, form) -> dict:
    result = {"name": file.name}
    title = form.cleaned_data["title"] if len(form.cleaned_data["files"]) == 1 else ""
    try:
        image, created = image_create(
            file=file, title=title, description=form.cleaned_data["description"], tags=form.cleaned_data["tags"]
        )
    except GalleryError as exc:
        return result | {"outcome": "rejected", "reason": str(exc)}
    if not access.can_see(request.user, image):
        return result | {"outcome": "present"}
    return result | {"outcome": "added" if created else "present", "url": image.get_absolute_url(), "title": str(image)}


class SignInView(LoginView):
    """Django's sign-in page; password guesses meet the one sign-in limit inside
    ``authenticate()`` (``gallery.http.throttles.ThrottledModelBackend``), as on the admin's and the
    token endpoint."""

    template_name = "gallery/login.html"


def media(request, path):
    """The local media folder, through the access policy: originals and thumbnails of images
    the user may see; nothing else (index versions and model exports stay private). Programs
    send the API token they got these URLs with; browsers their session."""
    try:
        user = media_user(request)
    except AuthenticationFailed as exc:
        return JsonResponse({"detail": str(exc.detail)}, status=401)
    if not access.can_view(user) or not path.startswith(("originals/", "thumbnails/")):
        raise Http404
    images = access.viewable_images(user).filter(Q(file=path) | Q(thumbnail=path))
    if not images.exists() or not default_storage.exists(path):
        raise Http404
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    response = FileResponse(default_storage.open(path, "rb"), content_type=content_type)
    # Names carry the content's hash: browsers may keep the bytes, but only this user's browser.
    patch_cache_control(response, private=True, max_age=3600)
    return response


def page_not_found(request, exception):
    """API clients get JSON even for URLs no API view matched; people get a page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "gallery/404.html", status=404)


def bad_request(request, exception):
    """A body over its limit found while streaming (``gallery.http.request_limits``) says so; other
    malformed requests get a plain sentence."""
    too_large = isinstance(exception, BodyTooLarge)
    message, status = (str(exception), 413) if too_large else ("The request could not be understood.", 400)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return render(request, "gallery/error.html", {"error": message}, status=status)

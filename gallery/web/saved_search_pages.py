"""The /saved/ pages: a member's saved searches with what is new since they last looked, and
saving or deleting one (the "Save this search" button on search results posts here). The same
services as the API (``gallery.search.saved_searches``)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from gallery import search
from gallery.catalogue import access
from gallery.errors import GalleryError
from gallery.http.throttles import SavedSearchThrottle, throttled
from gallery.search import saved_searches
from gallery.web.views import _failure, _too_many

MATCHES_SHOWN = 24  # per saved search on the page; the API pages through all of them


def _members_only(request) -> bool:
    return bool(request.user.is_authenticated and access.can_view(request.user))


def saved_list(request):
    """GET: each saved search with its matches, the new ones marked (then no longer new).
    POST: save the search given as ``query`` (a signed token) or ``q`` (text)."""
    if not _members_only(request):
        return redirect_to_login(request.get_full_path())
    if request.method == "POST":
        return _save(request)
    seen_at = timezone.now()  # before reading: a match found meanwhile stays new for next time
    searches = list(saved_searches.saved_searches_of(request.user))
    for saved in searches:
        matches = list(saved_searches.saved_search_matches(saved)[:MATCHES_SHOWN])
        saved.shown = [(match, saved_searches.is_new(saved, match)) for match in matches]
        saved.new_label = saved_searches.new_count_label(saved.new_count)
    saved_searches.saved_searches_mark_seen(searches=searches, at=seen_at)
    return render(request, "gallery/saved.html", {"searches": searches})


def _save(request):
    if wait := throttled(request, SavedSearchThrottle):
        return _too_many(request, wait)
    token, text = request.POST.get("query", ""), request.POST.get("q", "")
    try:
        query = search.SearchQuery.from_token(token) if token else search.text_query(text)
        saved = saved_searches.saved_search_create(user=request.user, query=query, name=request.POST.get("name", ""))
    except GalleryError as exc:
        return _failure(request, exc, "gallery/error.html", {})
    messages.success(request, f"Saved “{saved}”. New photos that match it will appear here after each index run.")
    return redirect("gallery:saved-searches")


@require_POST
def saved_delete(request, pk):
    if not _members_only(request):
        return redirect_to_login("/saved/")
    saved = get_object_or_404(saved_searches.saved_searches_of(request.user), pk=pk)
    saved_searches.saved_search_delete(saved=saved)
    messages.success(request, f"Deleted the saved search “{saved}”.")
    return redirect("gallery:saved-searches")

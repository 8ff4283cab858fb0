from gallery.selectors import index_status as _index_status


def index_status(request):
    """The status line and the random-weights banner on every page."""
    return {"index_status": _index_status()}

from gallery.catalogue import access
from gallery.catalogue.status import index_status as _index_status
from gallery.models import MAX_QUERY_LENGTH
from gallery.web.forms import DEFAULT_BALANCE


def index_status(request):
    """The status line and the random-weights banner on every page."""
    return {
        # The status line tells how many images there are: only for people who may read the gallery.
        "index_status": _index_status() if access.can_view(request.user) else None,
        "can_upload": access.can_upload(request.user),
        "max_query_length": MAX_QUERY_LENGTH,
        "default_balance": DEFAULT_BALANCE,
    }

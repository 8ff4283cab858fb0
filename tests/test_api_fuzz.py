"""Property-based fuzzing of the whole OpenAPI schema with schemathesis: whatever a client
sends, the API answers with a documented status, never a 5xx, and a body matching the schema."""

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

MAX_EXAMPLES = 25  # per operation: bounded, so CI stays fast
# What the API promises. Left out on purpose: `ignored_auth` (reading and searching are public,
# so a bad cookie on them means anonymous, not 401) and the data-acceptance checks (like most DRF
# APIs, a malformed optional `page_size` falls back to the default instead of failing).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]

# Loading the schema only resolves URLs; requests run inside each test's transaction.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def served(indexed_gallery, settings):
    """A gallery with an index; requests that keep the test's transaction open (as Django's
    test client does), unthrottled; yields an ordinary user's token."""
    settings.API_SEARCH_RATE = settings.API_UPLOAD_RATE = "100000/min"
    cache.clear()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=User.objects.create_user("fuzzer")).key
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
# derandomize: the same examples on every run, so CI is repeatable; raise MAX_EXAMPLES or drop
# it locally to explore further.
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, served):
    # Operations alternate between an ordinary user with a token and an anonymous client.
    headers = {"Authorization": f"Token {served}"} if len(case.path + case.method) % 2 else {}
    case.call_and_validate(headers=headers, checks=CHECKS)

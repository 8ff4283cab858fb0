"""Security, round 2 (issue #22): forwarded addresses, one sign-in limit, the admin and the
access policy, model errors, request bodies, media with tokens, the Airflow client, what
GALLERY_REQUIRE_LOGIN closes, tokens and passwords, the demo's password."""

import io
import json
import logging
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from gallery.models import Image
from tests.conftest import as_upload, stored_files
from tests.images import image_bytes
from tests.test_access import (
    API,
    CHANGELIST,
    api_as,
    fresh_throttles,  # noqa: F401 (autouse: each test starts with empty throttles)
    local_media_only,
    user_with,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_image(upload):
    from gallery.indexing import index_refresh

    image, _ = upload(1, title="Secret lake")
    assert index_refresh().published is not None
    image.refresh_from_db()
    return image


def hide(image, **fields):
    from gallery.catalogue.curation import image_update

    image_update(image=image, hidden=True, **fields)
    image.refresh_from_db()
    return image


# --- 1. X-Forwarded-For is believed only from trusted proxies ---------------------------------


def test_a_made_up_forwarded_for_does_not_escape_the_throttles(one_image, settings):
    settings.API_SEARCH_RATE = "3/min"
    anon = APIClient()
    codes = [anon.get(f"{API}/search/", {"q": "lake"}, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    page = Client().get("/search/", {"q": "lake"}, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert page.status_code == 429  # the same address, whatever the header says


def test_a_trusted_proxy_counts_the_address_it_saw(one_image, settings):
    settings.API_SEARCH_RATE = "2/min"
    settings.GALLERY_TRUSTED_PROXIES = 1
    anon = APIClient()

    def search(forwarded):  # the client may put anything first; our proxy appends what it saw
        return anon.get(f"{API}/search/", {"q": "lake"}, HTTP_X_FORWARDED_FOR=forwarded).status_code

    assert [search(f"10.9.9.{n}, 192.0.2.1") for n in range(3)] == [200, 200, 429]
    assert search("192.0.2.2") == 200  # another client behind the same proxy has its own count


def test_password_guesses_with_made_up_forwarded_for_are_throttled(db):
    User.objects.create_user("robot", password="pw-robot-123")
    anon = APIClient()
    codes = [
        anon.post(f"{API}/auth/token/", {"username": f"user{n}", "password": "guess"}, format="json", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(12)
    ]
    assert codes == [400] * 10 + [429] * 2  # per address: ten different accounts, one address
    right = anon.post(f"{API}/auth/token/", {"username": "robot", "password": "pw-robot-123"}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert right.status_code == 429 and Token.objects.count() == 0


# --- 2. one sign-in limit: page, admin and token endpoint, per account and per address ---------


def test_one_sign_in_limit_for_every_way_in_per_account(db):
    User.objects.create_user("boss", password="pw-boss-123", is_staff=True, is_superuser=True)
    wrong = {"username": "boss", "password": "wrong"}
    codes = []
    for n in range(4):  # each guess from another address: the account's count stops them
        codes.append(Client().post("/accounts/login/", wrong, REMOTE_ADDR=f"10.0.1.{n}").status_code)
    for n in range(3):
        codes.append(Client().post("/admin/login/", wrong, REMOTE_ADDR=f"10.0.2.{n}").status_code)
    for n in range(3):
        codes.append(APIClient().post(f"{API}/auth/token/", wrong, format="json", REMOTE_ADDR=f"10.0.3.{n}").status_code)
    assert codes == [200] * 7 + [400] * 3
    right = {"username": "boss", "password": "pw-boss-123"}
    admin = Client()
    refused = admin.post("/admin/login/", right, REMOTE_ADDR="10.0.4.1")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Too many failed sign-in attempts" in refused.content.decode() and "_auth_user_id" not in admin.session
    page = Client()
    assert page.post("/accounts/login/", right, REMOTE_ADDR="10.0.4.2").status_code == 429 and "_auth_user_id" not in page.session
    token = APIClient().post(f"{API}/auth/token/", right, format="json", REMOTE_ADDR="10.0.4.3")
    assert token.status_code == 429 and "sign-in" in token.json()["detail"] and Token.objects.count() == 0


def test_one_sign_in_limit_per_address_across_accounts(db):
    User.objects.create_user("boss", password="pw-boss-123", is_staff=True, is_superuser=True)
    codes = [Client().post("/admin/login/", {"username": f"nobody{n}", "password": "x"}).status_code for n in range(10)]
    assert codes == [200] * 10
    admin = Client()
    refused = admin.post("/admin/login/", {"username": "boss", "password": "pw-boss-123"})
    assert refused.status_code == 429 and "_auth_user_id" not in admin.session
    # Another address signs in at once: the account itself saw no failures.
    other = Client()
    assert other.post("/admin/login/", {"username": "boss", "password": "pw-boss-123"}, REMOTE_ADDR="10.0.0.9").status_code == 302
    assert "_auth_user_id" in other.session


def test_guesses_sent_all_at_once_are_all_counted(db, monkeypatch, rf):
    """Twenty guesses in flight together while each password check is slow: only the first ten
    reach a password check (a read-then-write count let every one of them through)."""
    from django.contrib.auth.backends import ModelBackend

    from gallery.http.throttles import SignInThrottled, ThrottledModelBackend

    checked, start = [], threading.Barrier(20)

    def slow_check(self, request, username=None, password=None, **kwargs):
        checked.append(username)
        time.sleep(0.3)  # PBKDF2's cost, widened: every guess is in flight before any is counted
        return None

    monkeypatch.setattr(ModelBackend, "authenticate", slow_check)
    refused = []

    def guess(n):
        start.wait()
        try:
            ThrottledModelBackend().authenticate(rf.post("/accounts/login/", REMOTE_ADDR=f"10.9.0.{n}"), "boss", "guess")
        except SignInThrottled:
            refused.append(n)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(checked), len(refused)) == (10, 10)


# --- 3 is in tests/test_decode_memory.py ---------------------------------------------------------
# --- 4. the admin asks gallery.catalogue.access: view-only staff do not see hidden images ------------------


def test_view_only_staff_see_no_hidden_images_in_the_admin(client, one_image, upload):
    visible, _ = upload(2, title="Open field")
    hide(one_image, description="where we hid it")
    client.force_login(user_with("viewer", "view_image", staff=True))
    listing = client.get(CHANGELIST).content.decode()
    assert "Open field" in listing and "Secret lake" not in listing
    assert "hidden__exact" not in listing  # no filter by hidden
    assert "Secret lake" not in client.get(CHANGELIST + "?hidden__exact=1").content.decode()
    found = client.get(CHANGELIST, {"q": f"={one_image.sha256}"}).content.decode()
    assert "0 results (" in found and found.count('style="height:4rem') == 0  # the bytes' existence stays unknown
    change = client.get(f"{CHANGELIST}{one_image.pk}/change/", follow=True).content.decode()
    assert "where we hid it" not in change and one_image.sha256 not in change and "Secret lake" not in change
    assert "Open field" in client.get(f"{CHANGELIST}{visible.pk}/change/").content.decode()
    # Curators still see and filter them.
    client.force_login(user_with("editor", "view_image", "change_image", staff=True))
    assert "Secret lake" in client.get(CHANGELIST + "?hidden__exact=1").content.decode()
    assert "where we hid it" in client.get(f"{CHANGELIST}{one_image.pk}/change/").content.decode()


def test_view_only_staff_see_no_text_read_in_hidden_images(client, one_image, upload):
    from gallery.models import ImageText

    visible, _ = upload(2, title="Open field")
    for image, text in ((one_image, "SECRET PLAN"), (visible, "OPEN DAY")):
        ImageText.objects.create(image=image, engine="rapidocr", source=image.file.name, error=f"slow {text}",
                                 lines=[{"text": text, "box": [[0, 0]] * 4, "confidence": 0.9}])
    Image.objects.filter(pk=one_image.pk).update(ocr_text="SECRET PLAN")  # what the admin searches
    Image.objects.filter(pk=visible.pk).update(ocr_text="OPEN DAY")
    hide(one_image)
    texts = "/admin/gallery/imagetext/"
    client.force_login(user_with("reader", "view_imagetext", staff=True))
    listing = client.get(texts).content.decode()
    assert "Open field" in listing and "Secret lake" not in listing
    assert "slow OPEN DAY" not in listing  # why reading failed: curators only
    assert "Secret lake" not in client.get(texts, {"q": "SECRET"}).content.decode()
    assert "Open field" in client.get(texts, {"q": "OPEN"}).content.decode()  # the search itself works
    assert "Open field" not in client.get(texts, {"q": "slow"}).content.decode()  # errors: not searched for them
    change = client.get(f"{texts}{one_image.pk}/change/", follow=True).content.decode()
    assert "SECRET PLAN" not in change
    assert "OPEN DAY" in client.get(f"{texts}{visible.pk}/change/").content.decode()
    client.force_login(user_with("curator", "view_imagetext", "change_image", staff=True))
    listing = client.get(texts).content.decode()
    assert "Secret lake" in listing and "slow SECRET PLAN" in listing
    assert "Secret lake" in client.get(texts, {"q": "SECRET"}).content.decode()


# --- 5. re-uploading a hidden image's bytes in the admin ---------------------------------------


def test_admin_re_upload_of_hidden_bytes_reveals_nothing_and_logs_no_addition(client, one_image, media):
    hide(one_image)
    files_before = stored_files()
    client.force_login(user_with("adder", "view_image", "add_image", staff=True))
    response = client.post(CHANGELIST + "add/", {"upload": as_upload(image_bytes(1)), "title": "Probe", "description": ""}, follow=True)
    text = response.content.decode()
    assert "Secret lake" not in text and "was added successfully" not in text
    assert "already in the gallery" in text
    assert LogEntry.objects.count() == 0 and Image.objects.count() == 1 and stored_files() == files_before


def test_admin_re_upload_of_visible_bytes_shows_the_existing_image_without_saying_added(admin_client, one_image):
    response = admin_client.post(CHANGELIST + "add/", {"upload": as_upload(image_bytes(1)), "title": "Again", "description": ""}, follow=True)
    text = response.content.decode()
    assert response.redirect_chain[-1][0] == f"{CHANGELIST}{one_image.pk}/change/"
    assert "already in the gallery" in text and "was added successfully" not in text
    assert LogEntry.objects.count() == 0 and Image.objects.count() == 1


# --- 6. a model that cannot be loaded shows no server paths -------------------------------------


def test_a_model_that_fails_to_load_shows_no_server_paths(client, one_image, settings, caplog, fresh_embedders):
    settings.CLIP_PRETRAINED = "/srv/private/models/secret-weights.pt"
    settings.CLIP_RUNTIME = "torch"
    with caplog.at_level(logging.ERROR, logger="gallery"):
        api = APIClient().get(f"{API}/search/", {"q": "cat"})
        page = client.get("/search/", {"q": "cat"})
        detail = client.get(one_image.get_absolute_url())
    assert api.status_code == 503 and "could not be loaded" in api.json()["detail"]
    assert page.status_code == 503 and "could not be loaded" in page.content.decode()
    assert detail.status_code == 200 and "Secret lake" in detail.content.decode()  # "more like this" needs no model
    for text in (json.dumps(api.json()), page.content.decode(), detail.content.decode()):
        assert "/srv/private" not in text and "secret-weights" not in text, text[text.find("/srv/private") - 300:][:600]
    assert "/srv/private/models/secret-weights.pt" in caplog.text  # the details are in the log


# --- 7. request bodies are refused before they are written --------------------------------------


@pytest.fixture
def temp_file_bytes(monkeypatch):
    """How many bytes of uploads reached temporary files on disk."""
    written = []
    receive = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        written.append(len(raw_data))
        return receive(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    return written


BIG = b"\xff\xd8" + bytes(12 * 1024 * 1024)  # 12 MB, over FILE_UPLOAD_MAX_MEMORY_SIZE: a temporary file


@pytest.mark.parametrize(
    "url, field", [(f"{API}/search/image/", "file"), ("/search/image/", "file"), (f"{API}/images/", "file"), (CHANGELIST + "add/", "upload")]
)
def test_an_oversized_body_is_refused_by_its_length_before_it_is_read(admin_client, settings, temp_file_bytes, media, url, field):
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    response = admin_client.post(url, {field: as_upload(BIG)})
    assert response.status_code == 413 and "too large" in response.content.decode()
    assert sum(temp_file_bytes) == 0 and Image.objects.count() == 0 and stored_files() == []


def test_an_oversized_file_is_stopped_while_it_streams(member_client, settings, temp_file_bytes, media):
    """Within the upload page's limit for the whole body (several files), one file over
    UPLOAD_MAX_BYTES stops as soon as it passes it."""
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    response = member_client.post("/upload/", {"files": [as_upload(image_bytes(1)), as_upload(BIG)]})
    assert response.status_code == 413 and "too large" in response.content.decode()
    assert sum(temp_file_bytes) <= 2 * 1024 * 1024 and Image.objects.count() == 0 and stored_files() == []


def test_only_a_member_may_send_the_upload_page_a_body_of_several_files(member_client, settings, temp_file_bytes, media):
    """The upload page takes UPLOAD_MAX_FILES files from a member; from anyone else it is refused
    by the one-file limit before the CSRF check reads it (it would refuse them only after)."""
    settings.UPLOAD_MAX_BYTES = 1024 * 1024

    def files():  # 2.1 MB
        return {"files": [as_upload(image_bytes(n) + bytes(700 * 1024), name=f"{n}.jpg") for n in range(3)]}

    response = Client().post("/upload/", files())  # a visitor's
    assert response.status_code == 413 and "too large" in response.content.decode()
    assert sum(temp_file_bytes) == 0
    response = member_client.post("/upload/", files())
    assert response.status_code == 200 and Image.objects.count() == 3  # read, then judged file by file


def test_an_api_file_part_over_the_limit_stops_while_it_streams(member, settings, media):
    """Within the body's allowance for form fields, but the file itself is over UPLOAD_MAX_BYTES."""
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    response = api_as(member).post(f"{API}/images/", {"file": as_upload(b"\xff\xd8" + bytes(1024 * 1024 + 100_000))})
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert Image.objects.count() == 0 and stored_files() == []


def test_one_page_upload_of_many_files_counts_each_against_the_upload_limit(member_client, member, settings, media):
    settings.API_UPLOAD_RATE = "3/min"
    files = [as_upload(image_bytes(n), name=f"{n}.jpg") for n in range(5)]
    text = member_client.post("/upload/", {"files": files}).content.decode()
    assert Image.objects.count() == 3 and text.count("Too many uploads") == 2
    assert api_as(member).post(f"{API}/images/", {"file": as_upload(image_bytes(9))}).status_code == 429


# --- 8. media with API tokens -----------------------------------------------------------------


def token_client(user):
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=user).key}"
    return client


@local_media_only
def test_api_tokens_open_the_media_urls_the_api_gives(one_image, settings, member):
    settings.GALLERY_REQUIRE_LOGIN = True
    program = token_client(member)
    body = program.get(f"{API}/images/{one_image.pk}/").json()
    for url, name in ((body["original_url"], one_image.file.name), (body["thumbnail_url"], one_image.thumbnail.name)):
        got = program.get(url)
        assert got.status_code == 200 and b"".join(got.streaming_content) == default_storage.open(name).read()
        assert Client().get(url).status_code == 404  # without the token

    curator = token_client(user_with("curator", "view_image", "change_image"))
    hide(one_image)
    assert program.get(body["original_url"]).status_code == 404
    hidden = curator.get(body["original_url"])
    assert hidden.status_code == 200 and b"".join(hidden.streaming_content) == image_bytes(1)

    from gallery.catalogue.curation import image_update

    image_update(image=one_image, hidden=False)
    Token.objects.filter(user=member).update(created=timezone.now() - timedelta(days=settings.API_TOKEN_LIFETIME_DAYS + 1))
    expired = program.get(body["thumbnail_url"])
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


# --- 9. the Airflow client: no credentials on redirects, none in messages ------------------------


class FakeAirflow:
    """An HTTP server on 127.0.0.1 that records requests; ``answer(path)`` -> (status, headers, body)."""

    def __init__(self, answer):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                seen.append((self.command, self.path, self.headers.get("Authorization"), self.rfile.read(length)))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_airflow_redirects_are_not_followed_with_credentials(settings):
    from gallery.errors import AirflowUnavailable
    from gallery.indexing import airflow_api

    elsewhere = FakeAirflow(lambda path: (200, {"Content-Type": "application/json"}, b'{"dag_run_id": "stolen"}'))
    token = b'{"access_token": "secret-jwt"}'

    def answer(path):
        if path == "/auth/token":
            return 200, {"Content-Type": "application/json"}, token
        return 302, {"Location": f"http://localhost:{elsewhere.port}/collect"}, b""

    airflow = FakeAirflow(answer)
    settings.AIRFLOW_API_URL, settings.AIRFLOW_API_USERNAME, settings.AIRFLOW_API_PASSWORD = f"http://127.0.0.1:{airflow.port}", "admin", "pw"
    airflow_api._tokens.clear()
    try:
        with pytest.raises(AirflowUnavailable, match="redirect") as raised:
            airflow_api.trigger_dag_run()
    finally:
        airflow.close()
        elsewhere.close()
        airflow_api._tokens.clear()
    assert elsewhere.seen == []  # neither the token nor a GET in place of the POST went on
    assert [(method, path) for method, path, *_ in airflow.seen] == [("POST", "/auth/token"), ("POST", "/api/v2/dags/search_index/dagRuns")]
    assert "secret-jwt" not in str(raised.value)


def test_an_airflow_answer_that_quotes_the_password_is_shown_without_it(settings):
    from gallery.errors import AirflowUnavailable
    from gallery.indexing import airflow_api

    # A proxy or an older API that echoes the request it refuses, password included.
    airflow = FakeAirflow(lambda path: (422, {"Content-Type": "application/json"}, b'{"detail": "bad login admin/hunter2"}'))
    settings.AIRFLOW_API_URL, settings.AIRFLOW_API_USERNAME, settings.AIRFLOW_API_PASSWORD = f"http://127.0.0.1:{airflow.port}", "admin", "hunter2"
    airflow_api._tokens.clear()
    try:
        with pytest.raises(AirflowUnavailable, match="422") as raised:
            airflow_api.trigger_dag_run()
    finally:
        airflow.close()
    assert "hunter2" not in str(raised.value) and "admin/***" in str(raised.value)


def test_credentials_in_the_airflow_url_stay_out_of_messages_and_logs(settings, caplog, monkeypatch):
    from gallery.errors import AirflowUnavailable
    from gallery.indexing import airflow_api

    monkeypatch.setattr(airflow_api, "ANNOUNCE_PATIENCE", 1)  # its retries log too

    for url in ("http://admin:hunter2@127.0.0.1:9/", "http://admin:hunter2@127.0.0.1/", "http://127.0.0.1:9/?token=hunter2"):
        settings.AIRFLOW_API_URL = url
        airflow_api._tokens.clear()
        with pytest.raises(AirflowUnavailable) as raised, caplog.at_level(logging.DEBUG):
            airflow_api.trigger_dag_run()
        assert "hunter2" not in str(raised.value), str(raised.value)
    with caplog.at_level(logging.DEBUG, logger="gallery.indexing.airflow_api"):
        airflow_api.announce_new_images()
        assert airflow_api.announcements_flush()
    assert "not announced" in caplog.text and "hunter2" not in caplog.text


# --- 10. GALLERY_REQUIRE_LOGIN closes the schema, its docs and the status line -----------------


def test_require_login_closes_the_schema_docs_and_status_line(one_image, member_client, settings):
    anon = Client()
    assert "1 image searchable" in anon.get("/accounts/login/").content.decode()  # public gallery: public figures
    settings.GALLERY_REQUIRE_LOGIN = True
    for url in ("/api/schema/", "/api/docs/"):
        assert anon.get(url).status_code == 401, url
        assert member_client.get(url).status_code == 200, url
    for url, status in (("/accounts/login/", 200), ("/no-such-page/", 404)):
        response = anon.get(url)
        assert response.status_code == status
        assert "searchable" not in response.content.decode() and "index-status" not in response.content.decode()
    assert "1 image searchable" in member_client.get("/no-such-page/").content.decode()


# --- 11. tokens end with the password ----------------------------------------------------------


def test_changing_a_password_ends_the_users_tokens(client):
    staff = User.objects.create_user("staffer", password="pw-staffer-123", is_staff=True)
    key = Token.objects.create(user=staff).key
    other = Token.objects.create(user=User.objects.create_user("other", password="pw-other-123")).key
    client.force_login(staff)
    response = client.post(
        "/admin/password_change/",
        {"old_password": "pw-staffer-123", "new_password1": "a-New-passw0rd!", "new_password2": "a-New-passw0rd!"},
    )
    assert response.status_code == 302
    assert not Token.objects.filter(user=staff).exists() and Token.objects.filter(key=other).exists()
    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert program.get(f"{API}/images/").status_code == 401


def test_an_admin_resetting_a_password_ends_the_users_tokens(admin_client):
    robot = User.objects.create_user("robot", password="pw-robot-123")
    Token.objects.create(user=robot)
    response = admin_client.post(
        f"/admin/auth/user/{robot.pk}/password/", {"password1": "a-New-passw0rd!", "password2": "a-New-passw0rd!", "usable_password": "true"}
    )
    assert response.status_code == 302
    assert not Token.objects.filter(user=robot).exists()
    assert Token.objects.filter(user__username="admin").count() == 0  # nobody else's changed


# --- Also: any Host, and the demo's password ----------------------------------------------------


def test_any_host_is_refused_outside_debug_and_the_image_does_not_set_it(tmp_path):
    import re

    from tests.test_access import ROOT, check_deploy

    done = check_deploy(tmp_path, "check", DJANGO_ALLOWED_HOSTS="*")
    assert done.returncode != 0 and "DJANGO_ALLOWED_HOSTS=* is refused" in done.stderr
    assert check_deploy(tmp_path, "check", DJANGO_ALLOWED_HOSTS="*", DJANGO_DEBUG="1").returncode == 0
    assert not re.search(r"^ENV\b.*DJANGO_ALLOWED_HOSTS=\*", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_the_demo_prints_the_admin_password_only_when_it_makes_it(settings, tmp_path):
    from gallery.management.commands.demo import Command

    settings.VAR_DIR = tmp_path
    outputs = []
    for _ in range(2):
        out = io.StringIO()
        command = Command(stdout=out)
        command._ensure_account()
        outputs.append(out.getvalue())
    password = (tmp_path / "admin-password").read_text().strip()
    assert password in outputs[0] and User.objects.get(username="admin").check_password(password)
    assert password not in outputs[1] and str(tmp_path / "admin-password") in outputs[1]


@pytest.mark.parametrize("path", [f"{API}/search/image/", "/upload/"])
def test_a_chunked_body_under_asgi_is_cut_off_at_the_limit(settings, media, path):
    """No Content-Length to refuse it by: the ASGI handler keeps at most the limit of it and the
    request is answered 413 (Django's own handler would spool all of it to a temporary file).
    Without a session cookie the upload page's limit is one file's too."""
    import asyncio

    from webapp.asgi import application

    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    chunks = [b"x" * (256 * 1024)] * 40  # 10 MB, no length announced
    kept = []
    replies = []

    async def run():
        sent = iter([*({"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks), {"type": "http.request", "body": b""}])

        async def receive():
            message = next(sent, None)
            if message is None:  # the client waits for the answer (Django listens for a disconnect meanwhile)
                await asyncio.sleep(60)
                return {"type": "http.disconnect"}
            return message

        async def send(message):
            replies.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), (b"content-type", b"multipart/form-data; boundary=xyz")],
            "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        }
        original = application.read_body

        async def read_body(receive):
            body = await original(receive)
            kept.append(len(body.read()))
            body.seek(0)
            return body

        application.read_body = read_body
        try:
            await application(scope, receive, send)
        finally:
            del application.read_body

    asyncio.run(run())
    start = next(message for message in replies if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in replies if message["type"] == "http.response.body")
    assert start["status"] == 413 and b"too large" in body
    assert kept == [2 * 1024 * 1024]  # UPLOAD_MAX_BYTES and the form allowance: eight chunks; the other 32 dropped

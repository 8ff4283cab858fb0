"""Clients generated from the live OpenAPI schema work unmodified: a Python package made by
openapi-python-client drives the main journeys and gets every error answer parsed into its
models; TypeScript types made by openapi-typescript type-check a small program with tsc.
The commands are the README's ("Generated clients")."""

import importlib
import io
import json
import os
import pkgutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.test import APIClient

from gallery.models import Image
from tests.conftest import stored_files
from tests.images import image_bytes

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NODE_BIN = ROOT / "node_modules" / ".bin"
TS_USAGE = Path(__file__).parent / "clients"


def run(command, **kwargs):
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120, check=False, **kwargs)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()


@pytest.fixture(scope="module")
def py_client(live_server, tmp_path_factory):
    """The package openapi-python-client generates from /api/schema/, imported as it comes."""
    out = tmp_path_factory.mktemp("python-client")
    # The generator formats its output with ruff (a dependency of it, next to this Python); a
    # warning such as a skipped operation or a missing formatter fails the generation.
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    schema_url = f"{live_server.url}/api/schema/"
    code, output = run(
        [VENV_BIN / "openapi-python-client", "generate", "--url", schema_url, "--meta", "none", "--fail-on-warning"], cwd=out, env=env
    )
    assert code == 0, output
    (package_dir,) = [path for path in out.iterdir() if (path / "__init__.py").exists()]
    name = package_dir.name
    sys.path.insert(0, str(out))
    try:
        # Every module imports: a generated module that uses a name it does not import fails here.
        modules = {info.name: importlib.import_module(info.name) for info in pkgutil.walk_packages([str(package_dir)], f"{name}.")}
        api = SimpleNamespace(**{full.rsplit(".", 1)[1]: module for full, module in modules.items() if ".api." in full})
        yield SimpleNamespace(
            api=api, models=modules[f"{name}.models"], types=modules[f"{name}.types"], client=modules[f"{name}.client"], url=live_server.url
        )
    finally:
        sys.path.remove(str(out))
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


def anonymous(py_client):
    return py_client.client.Client(base_url=py_client.url, raise_on_unexpected_status=True)


def logged_in(py_client, username, password):
    """A client holding the token the API hands out for this password."""
    body = py_client.models.AuthTokenRequest(username=username, password=password)
    token = py_client.api.v1_auth_token_create.sync(client=anonymous(py_client), body=body)
    assert isinstance(token, py_client.models.Token) and len(token.token) == 40
    # The scheme is "Token", not the generator's default "Bearer".
    return py_client.client.AuthenticatedClient(base_url=py_client.url, token=token.token, prefix="Token", raise_on_unexpected_status=True)


def a_file(py_client, data, name="photo.jpg"):
    return py_client.types.File(payload=io.BytesIO(data), file_name=name, mime_type="image/jpeg")


def hit_ids(page):
    return [hit.image.id for hit in page.results]


def test_each_operation_takes_one_request_content_type(db):
    """Generated clients send the one body an operation declares: JSON, or multipart for files."""
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    bodies = {
        f"{method.upper()} {path}": list(operation["requestBody"]["content"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert bodies == {
        "POST /api/v1/auth/token/": ["application/json"],
        "POST /api/v1/images/": ["multipart/form-data"],
        "PATCH /api/v1/images/{id}/": ["application/json"],
        "POST /api/v1/search/image/": ["multipart/form-data"],
        "POST /api/v1/search/combined/": ["multipart/form-data"],
        "POST /api/v1/pins/": ["application/json"],
        "PATCH /api/v1/pins/{id}/": ["application/json"],
        "POST /api/v1/duplicates/{id}/keep/": ["application/json"],
        "POST /api/v1/saved-searches/": ["multipart/form-data"],
    }
    token_ops = schema["paths"]["/api/v1/auth/token/"]["post"]
    assert {} in token_ops["security"]  # no login needed to get a token


def test_token_takes_json_and_says_what_else_is_refused(db):
    User.objects.create_user("robot", password="pw-robot-123")
    client = APIClient()
    ok = client.post("/api/v1/auth/token/", {"username": "robot", "password": "pw-robot-123"}, format="json")
    assert ok.status_code == 200 and len(ok.json()["token"]) == 40
    form = client.post("/api/v1/auth/token/", "username=robot&password=pw-robot-123", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and "application/x-www-form-urlencoded" in form.json()["detail"]


def test_python_client_journeys(py_client, live_server, indexed_gallery, media):
    api, models = py_client.api, py_client.models
    User.objects.create_user("robot", password="pw-robot-123")
    curator = User.objects.create_user("curator", password="pw-curator-123", is_staff=True)
    curator.user_permissions.add(*Permission.objects.filter(codename__in=["change_image", "delete_image"]))
    anon, robot = anonymous(py_client), logged_in(py_client, "robot", "pw-robot-123")
    staff = logged_in(py_client, "curator", "pw-curator-123")

    # List: newest first, filters and pages.
    first = api.v1_images_list.sync(client=anon, page_size=8)
    assert isinstance(first, models.PaginatedImageList)
    assert len(first.results) == 8 and [image.title for image in first.results[:2]] == ["Photo 19", "Photo 18"]
    page, indexed = first, models.V1ImagesListStatus.INDEXED
    for _ in range(2):  # keyset pages: the next page from the cursor in `next`
        cursor = parse_qs(urlparse(page.next_).query)["cursor"][0]
        page = api.v1_images_list.sync(client=anon, page_size=8, cursor=cursor, status=indexed)
    assert [image.title for image in page.results] == [f"Photo {n}" for n in (3, 2, 1, 0)] and page.next_ is None
    assert page.results[0].status == models.StatusEnum.INDEXED and page.results[0].width == 96
    cut = indexed_gallery[10].uploaded_at  # an aware datetime, sent with its offset
    assert len(api.v1_images_list.sync(client=anon, uploaded_after=cut).results) == 10
    assert len(api.v1_images_list.sync(client=anon, uploaded_before=cut).results) == 11

    # Searches: by text (ranked, paged), by an example image, both combined, and "more like this".
    text = api.v1_search_list.sync(client=anon, q="a red square", page_size=5)
    assert text.count == 20 and [hit.rank for hit in text.results] == [1, 2, 3, 4, 5]
    scores = [hit.score for hit in text.results]
    assert scores == sorted(scores, reverse=True) and isinstance(text.results[0].image, models.Image)
    page_two = api.v1_search_list.sync(client=anon, q="a red square", page_size=5, page=2)
    assert [hit.rank for hit in page_two.results] == [6, 7, 8, 9, 10] and page_two.results[0].score <= scores[-1]
    twin = api.v1_search_image_create.sync(client=anon, body=models.ImageSearchRequest(file=a_file(py_client, image_bytes(9))))
    assert twin.results[0].image.title == "Photo 9" and twin.results[0].score > 0.99
    assert Image.objects.count() == 20  # a query image is never stored
    by_image = models.CombinedSearchRequest(file=a_file(py_client, image_bytes(6)), text_weight=0.0)
    assert api.v1_search_combined_create.sync(client=anon, body=by_image).results[0].image.title == "Photo 6"
    mixed = models.CombinedSearchRequest(
        text="a green circle", file=a_file(py_client, image_bytes(6)), image_weight=0.5, negative_text="blue"
    )
    assert api.v1_search_combined_create.sync(client=anon, body=mixed).count == 20
    words_only = api.v1_search_combined_create.sync(client=anon, body=models.CombinedSearchRequest(text="a green circle"))
    assert hit_ids(words_only) == hit_ids(api.v1_search_list.sync(client=anon, q="a green circle"))
    seed = indexed_gallery[13]
    assert hit_ids(api.v1_images_similar_list.sync(str(seed.pk), client=anon))[0] == seed.pk

    # Upload as a user; the same bytes again give the same image back.
    photo = image_bytes(100)
    new = api.v1_images_create.sync(client=robot, body=models.ImageUploadRequest(file=a_file(py_client, photo), title="Red shoes"))
    assert isinstance(new, models.UploadedImage) and new.created is True and new.status == models.StatusEnum.PENDING
    stored = Image.objects.get(pk=new.id)
    assert stored.title == "Red shoes" and stored.file.name in stored_files(media)
    again = api.v1_images_create.sync(client=robot, body=models.ImageUploadRequest(file=a_file(py_client, photo, "copy.jpg")))
    assert (again.id, again.created, Image.objects.count()) == (new.id, False, 21)

    # Staff: edit, hide (gone for everyone else), unhide, delete (row and files).
    rename = models.PatchedImageUpdateRequest(title="Trainers")
    edited = api.v1_images_partial_update.sync(str(new.id), client=staff, body=rename)
    assert edited.title == "Trainers" and Image.objects.get(pk=new.id).title == "Trainers"
    assert api.v1_images_hide_create.sync(str(new.id), client=staff).hidden is True
    assert api.v1_images_retrieve.sync_detailed(str(new.id), client=anon).status_code == 404
    assert [image.id for image in api.v1_images_list.sync(client=staff, hidden=True).results] == [new.id]
    assert api.v1_images_unhide_create.sync(str(new.id), client=staff).hidden is False
    assert api.v1_images_retrieve.sync(str(new.id), client=anon).title == "Trainers"
    assert api.v1_images_destroy.sync_detailed(str(new.id), client=staff).status_code == 204
    assert not Image.objects.filter(pk=new.id).exists() and stored.file.name not in stored_files(media)

    status = api.v1_index_retrieve.sync(client=anon)
    assert (status.searchable, status.waiting, status.model) == (20, 0, "tiny-test/random")


def test_python_client_parses_error_answers(py_client, indexed_gallery, settings):
    api, models = py_client.api, py_client.models
    User.objects.create_user("robot", password="pw-robot-123")
    anon, robot = anonymous(py_client), logged_in(py_client, "robot", "pw-robot-123")
    image = indexed_gallery[4]

    blank = api.v1_search_list.sync_detailed(client=anon, q="  ")
    assert blank.status_code == 400 and isinstance(blank.parsed, models.V1SearchListResponse400)
    assert "blank" in str(blank.parsed["q"])
    not_a_photo = models.ImageUploadRequest(file=a_file(py_client, b"not a photo"))
    broken = api.v1_images_create.sync_detailed(client=robot, body=not_a_photo)
    assert broken.status_code == 400 and "file" in broken.parsed.additional_keys and Image.objects.count() == 20
    wrong_password = api.v1_auth_token_create.sync_detailed(client=anon, body=models.AuthTokenRequest(username="robot", password="no"))
    assert wrong_password.status_code == 400 and "Unable to log in" in str(wrong_password.parsed.to_dict())

    forged = py_client.client.AuthenticatedClient(base_url=py_client.url, token="f" * 40, prefix="Token")
    unknown_token = api.v1_images_list.sync_detailed(client=forged)
    # 401: the token comes first in DEFAULT_AUTHENTICATION_CLASSES, and DRF answers with the first
    # class's WWW-Authenticate challenge (the session has none: it would be a 403).
    assert unknown_token.status_code == 401 and isinstance(unknown_token.parsed, models.Error)
    assert unknown_token.parsed.detail == "Invalid token."
    photo = models.ImageUploadRequest(file=a_file(py_client, image_bytes(101)))
    no_login = api.v1_images_create.sync_detailed(client=anon, body=photo)
    assert no_login.status_code == 401 and "credentials were not provided" in no_login.parsed.detail
    assert Image.objects.count() == 20
    rename = models.PatchedImageUpdateRequest(title="x")
    not_staff = api.v1_images_partial_update.sync_detailed(str(image.pk), client=robot, body=rename)
    assert not_staff.status_code == 403 and "permission" in not_staff.parsed.detail
    assert Image.objects.get(pk=image.pk).title == "Photo 4"

    missing = api.v1_images_retrieve.sync_detailed("424242", client=anon)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Error) and missing.parsed.detail

    settings.API_SEARCH_RATE = "2/min"
    cache.clear()  # the searches above count too
    answers = [api.v1_search_list.sync_detailed(client=anon, q="cat") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert isinstance(answers[2].parsed, models.Error) and "throttled" in answers[2].parsed.detail


def test_python_client_parses_no_index_yet(py_client, upload):
    upload(1)  # an image, but no index built
    answer = py_client.api.v1_search_list.sync_detailed(client=anonymous(py_client), q="cat")
    assert answer.status_code == 409 and isinstance(answer.parsed, py_client.models.Error)
    assert "no index has been built" in answer.parsed.detail


def test_typescript_types_type_check_a_client_program(live_server, tmp_path):
    if not (NODE_BIN / "tsc").exists():
        pytest.fail("openapi-typescript and tsc are missing: run `scripts/install --dev` (it runs `npm ci`)")
    with urllib.request.urlopen(f"{live_server.url}/api/schema/?format=json") as answer:
        schema = json.load(answer)

    def type_check(schema_file):
        types = tmp_path / "api.d.ts"
        code, output = run([NODE_BIN / "openapi-typescript", schema_file, "--default-non-nullable", "false", "-o", types])
        assert code == 0, output
        config = tmp_path / "tsconfig.json"
        config.write_text(
            json.dumps(
                {
                    "extends": str(TS_USAGE / "tsconfig.json"),
                    "compilerOptions": {"paths": {"search-image-api": [str(types)]}},
                    "files": [str(TS_USAGE / "usage.ts")],
                }
            )
        )
        return run([NODE_BIN / "tsc", "-p", config])

    (tmp_path / "schema.json").write_text(json.dumps(schema))
    code, output = type_check(tmp_path / "schema.json")
    assert code == 0, output

    # The check has teeth: a hit without its score breaks the program.
    hit = schema["components"]["schemas"]["SearchHit"]
    del hit["properties"]["score"]
    hit["required"].remove("score")
    (tmp_path / "broken.json").write_text(json.dumps(schema))
    code, output = type_check(tmp_path / "broken.json")
    assert code != 0 and "Property 'score' does not exist" in output

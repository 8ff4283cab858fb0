"""End-to-end tests in a real browser: Playwright drives Debian's headless Chromium against
the app served on loopback (pytest-django's live server) with a small real index.

Screenshots of each main page land in test-artifacts/ (CI keeps them)."""

import base64
import os
import re
import shutil
from pathlib import Path

import pytest

from gallery.models import Image
from tests.images import image_bytes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (scripts/install --dev installs it)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-quic", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test
    # itself are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, indexed_gallery):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def signed_in(page, live_server, django_user_model):
    """The same page, with a member's session cookie (uploading needs a member)."""
    from django.test import Client

    client = Client()
    client.force_login(django_user_model.objects.create_user("uploader"))
    cookie = client.cookies["sessionid"]
    page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return page


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def titles(page):
    return page.locator("#results .gallery-link").evaluate_all("links => links.map(a => a.title)")


def drop_file(page, data: bytes, name: str, selector="body"):
    """Drag a file from the desktop onto `selector`: a real drop event with a DataTransfer."""
    page.evaluate(
        """([b64, name, selector]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
            const target = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }
        }""",
        [base64.b64encode(data).decode(), name, selector],
    )


def test_browse_and_page(page):
    page.goto("/")
    assert page.locator("#results .gallery-link").count() == 16
    assert "20 images searchable" in page.locator("#index-status").inner_text()
    shot(page, "gallery")
    page.get_by_role("link", name="Older →").click()  # keyset pages: ?cursor=, as in the API
    assert page.locator("#results .gallery-link").count() == 4 and "cursor=" in page.url
    page.get_by_role("link", name="← Newer").click()
    assert page.locator("#results .gallery-link").count() == 16 and "cursor=" in page.url


def test_timeline_filtered_by_date_and_camera_and_a_search_sorted_by_date(page):
    import datetime as dt

    # Five photos as their EXIF blocks would date them (reading EXIF: tests/test_photo_facts.py).
    for n, (day, camera) in enumerate([("2024-07-14", "Pixel 7"), ("2024-07-02", "Pixel 7"), ("2024-07-20", "Canon EOS 5D"),
                                        ("2024-01-20", "Pixel 7"), ("2023-06-30", "Pixel 7")]):
        taken = dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=dt.timezone.utc)
        Image.objects.filter(title=f"Photo {n}").update(taken_at=taken, taken_at_source="camera", camera_model=camera)
    page.goto("/")
    page.get_by_role("link", name="By date taken").click()
    page.fill("#taken_after", "2024-07-01")
    page.fill("#taken_before", "2024-07-31")
    page.fill("#camera", "pixel 7")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"camera=pixel\+7"))
    assert titles(page) == ["Photo 0", "Photo 1"]  # July 2024 with that camera, newest taken first
    assert page.locator(".timeline-month").all_inner_texts() == ["July 2024"]
    shot(page, "timeline-filtered")
    # A search, then its relevant results newest taken first (20 images are too few to judge
    # relevance, so all are kept and the page says so).
    page.goto("/search/?q=a+red+square")
    page.get_by_role("link", name="relevant, newest taken first").click()
    page.wait_for_url(re.compile(r"sort=newest"))
    assert "too few photos yet to judge relevance" in page.locator("#result-views").inner_text()
    # Photos 5-19 are dated by their upload (today, in upload order), then July 2024's newest.
    assert titles(page) == [f"Photo {n}" for n in range(19, 4, -1)] + ["Photo 2"]


def test_text_search_and_shared_url(page, browser, live_server):
    page.goto("/")
    page.fill("#q", "a red square")
    page.press("#q", "Enter")
    page.wait_for_url(re.compile(r"/search/\?q=a\+red\+square"))
    first = titles(page)
    assert len(first) == 16 and page.locator(".score-badge").first.inner_text().startswith("#1 · ")
    shot(page, "search")
    page.reload()
    assert titles(page) == first
    other = browser.new_context(base_url=live_server.url).new_page()  # someone the link was sent to
    other.goto(page.url.replace(live_server.url, ""))
    assert titles(other) == first
    other.context.close()


def test_dropping_an_image_finds_its_twin_first(page):
    page.goto("/")
    drop_file(page, image_bytes(7), "query.jpg")
    page.wait_for_url(re.compile(r"/search/\?query="))
    assert titles(page)[0] == "Photo 7"
    assert page.locator("#query-preview").is_visible()  # shown from the browser's own copy
    assert Image.objects.count() == 20  # the query image was not stored
    shot(page, "search-by-image")


def test_combined_query_with_weight_and_negative(page):
    page.goto("/")
    page.locator("#image-search summary").click()
    page.set_input_files("#image-query", files=[{"name": "q.jpg", "mimeType": "image/jpeg", "buffer": image_bytes(3)}])
    page.fill("#combined-q", "a green circle")
    page.locator("#balance").fill("70")
    assert page.locator("#balance-out").inner_text() == "70"
    page.fill("#negative", "blue")
    page.get_by_role("button", name="Find").click()
    page.wait_for_url(re.compile(r"/search/\?query="))
    heading = page.locator("h1").inner_text()
    assert heading == "Photos like your image (70%) + “a green circle”, but not “blue”"
    assert len(titles(page)) == 16


def test_upload_three_files_one_broken_one_duplicate(signed_in):
    page = signed_in
    page.goto("/upload/")
    page.set_input_files(
        "#files",
        files=[
            {"name": "new.jpg", "mimeType": "image/jpeg", "buffer": image_bytes(100)},
            {"name": "duplicate.jpg", "mimeType": "image/jpeg", "buffer": image_bytes(5)},
            {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8 not really a jpeg"},
        ],
    )
    assert page.locator(".upload-item").count() == 3  # previews before sending
    page.get_by_role("button", name="Upload", exact=True).click()
    summary = page.locator("#upload-summary h2")
    summary.wait_for()
    assert summary.inner_text() == "Summary: 1 added, 1 already present, 1 rejected"
    results = page.locator("#upload-list").inner_text()
    assert "Already in the gallery: Photo 5" in results and "Rejected: The file is not an image" in results
    assert Image.objects.count() == 21 and Image.objects.filter(title="new").exists()
    shot(page, "upload")


def test_keyboard_only_search(page):
    page.goto("/")
    for _ in range(10):  # skip link, brand, then the search box
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a blue circle")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search/\?q="))
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('gallery-link')"):
            break
    first = page.evaluate("document.activeElement.title")
    assert first == titles(page)[0]
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/images/\d+/"))
    assert page.locator("h1").inner_text() == first
    assert titles(page)[0] == first  # more like this: itself first
    shot(page, "image")


# --- accessibility: axe-core on every page ------------------------------------------------------

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_violations(page) -> list[str]:
    """What axe-core (WCAG 2.1 A/AA and best practice) finds on the page as shown now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_RULES)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + "; ".join(", ".join(node["target"]) + " " + node.get("failureSummary", "").replace("\n", " ") for node in violation["nodes"][:3])
        for violation in found["violations"]
    ]


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed (scripts/install --dev installs it)")
def test_every_page_passes_axe_core(signed_in, live_server):
    page = signed_in
    image = Image.objects.order_by("pk").first()
    pages = ["/", "/?order=taken&camera=Pixel+7", "/search/?q=a+photo", "/search/?q=a+photo&sort=newest",
             "/search/?q=zzzz+nothing", f"/images/{image.pk}/", "/upload/", "/saved/", "/no-such-page/"]
    found = {}
    for url in pages:
        page.goto(url)
        found[url] = axe_violations(page)
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    found["/accounts/login/"] = axe_violations(page)
    report = "\n".join(f"{url}: {problem}" for url, problems in found.items() for problem in problems)
    assert not report, report

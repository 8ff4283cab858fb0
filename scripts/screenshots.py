"""Screenshots of the main pages for the README, from a running gallery (make run).

Usage: .venv/bin/python scripts/screenshots.py [BASE_URL]   (default http://127.0.0.1:8000)
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
SAMPLE = Path(__file__).resolve().parent.parent / ".venv/lib/python3.11/site-packages/skimage/data/chelsea.png"


def snap(page, name):
    # Thumbnails load lazily: wait until those in view are there.
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "Array.from(document.images).filter(i => i.getBoundingClientRect().top < innerHeight && !i.hidden).every(i => i.complete)"
    )
    page.screenshot(path=OUT / f"{name}.png")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{BASE}/")
        snap(page, "gallery")
        page.goto(f"{BASE}/search/?q=a+photo+of+a+cat")
        snap(page, "search")
        page.goto(f"{BASE}/")
        page.locator("#image-search summary").click()
        page.set_input_files("#image-query", str(SAMPLE))
        page.get_by_role("button", name="Find").click()
        page.wait_for_url("**/search/?image=*")
        snap(page, "search-by-image")
        page.locator("#results .gallery-link").first.click()
        snap(page, "image")
        page.goto(f"{BASE}/upload/")
        snap(page, "upload")
        browser.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()

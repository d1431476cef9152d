"""Open an `explain` report in headless Chromium (network cut off), fail on what a reader would see broken,
and keep a full-page screenshot.

Checks: every <img> decoded (they are embedded, so none may be fetched), a verdict and a score are shown,
and the page made no request at all.

usage: python .ci/check_report.py REPORT.html SCREENSHOT.png
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).parent))
from check_book import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402


def main(report: str, screenshot: str) -> int:
    path = Path(report).resolve()
    problems, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(path.as_uri(), wait_until="load")
        n_images = page.evaluate("() => document.images.length")
        broken = page.evaluate("() => Array.from(document.images).filter(i => i.naturalWidth === 0).length")
        text = page.inner_text("body")
        if n_images < 1 or broken:
            problems.append(f"{n_images} images, {broken} not decoded")
        verdict = page.locator(".verdict").all_inner_texts()
        if verdict not in (["normal"], ["ABNORMAL"]):
            problems.append(f"no single verdict on the page (found {verdict})")
        if "Anomaly score" not in text:
            problems.append("no score on the page")
        if requests:
            problems.append(f"the report fetched {requests}")
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    print(f"[{'ok' if not problems else 'FAIL'}] {path.name}: {n_images} images" + "".join(f"\n    - {x}" for x in problems))
    print(f"screenshot: {Path(screenshot).resolve()}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

Checks per page: HTTP 200, every <img> decoded (naturalWidth > 0), no executed cell
shows an error or traceback, Markdown tables built in cells render as tables, notebook
pages contain at least one figure, widget views
(when present) rendered, and sliders linked to precomputed views change them with no
kernel running, as must every control of a kernel-free explorer (.hq-explorer). Chromium runs with its network cut off except loopback, so a
page that needs the internet shows up here. A full-page screenshot of each page is kept
under _build/screenshots/.

usage: python .ci/check_book.py [_build/html]
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    # every host name except the local server resolves to nothing: no request leaves the machine
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

# What myst-nb / nbsphinx put around an executed cell's error output.
ERROR_SELECTORS = [".cell_output .output.error", ".cell_output .output.traceback", "div.output.stderr pre.ansi-red-fg"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def book_pages(root: Path) -> list[Path]:
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    pages = [p for p in root.rglob("*.html") if not any(part.startswith("_") for part in p.relative_to(root).parts)]
    return sorted(p for p in pages if p.name not in skip)


def check_page(page, url: str, is_notebook: bool) -> list[str]:
    problems = []
    response = page.goto(url, wait_until="load", timeout=60_000)
    if response is None or response.status != 200:
        return [f"HTTP {None if response is None else response.status}"]
    page.wait_for_timeout(1500)  # let widget managers and MathJax settle
    broken = page.evaluate(
        "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    problems += [f"broken image {src}" for src in broken]
    for selector in ERROR_SELECTORS:
        n = page.locator(selector).count()
        if n:
            problems.append(f"{n} cell error output(s) matching {selector}")
    body_text = page.inner_text("body")
    if "Traceback (most recent call last)" in body_text:
        problems.append("a traceback is printed on the page")
    # a Markdown table from a cell that was rendered as a paragraph, not a table
    # (the delimiter row survives as "|---|", or as "|—|" after Sphinx's smart quotes)
    unrendered = [p for p in page.locator(".cell_output p").all_inner_texts()
                  if re.search(r"\|\s*:?(-{3,}|[\u2013\u2014]+):?\s*\|", p)]
    if unrendered:
        problems.append(f"{len(unrendered)} Markdown table(s) in cell outputs not rendered as tables")
    n_images = page.evaluate("() => document.querySelectorAll('.cell_output img, .cell_output svg').length")
    if is_notebook and n_images == 0:
        problems.append("notebook page shows no figure")
    n_widget_views = page.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
    if n_widget_views:
        rendered = page.locator(".jupyter-widgets, .widget-container, .lm-Widget").count()
        if rendered == 0:
            problems.append(f"{n_widget_views} widget view(s) present but none rendered (widget JS not loaded?)")
        problems += check_linked_sliders(page)
        problems += check_explorers(page)
    return problems


def check_explorers(page) -> list[str]:
    """Every control of a kernel-free explorer (.hq-explorer: a menu, toggle buttons, a slider, each marked
    .hq-control) must change its view (.hq-view) when moved, with no kernel (jslinks only)."""
    problems = []
    explorers = page.locator(".hq-explorer")
    for e in range(explorers.count()):
        explorer = explorers.nth(e)
        view = explorer.locator(".hq-view").first
        controls = explorer.locator(".hq-control")
        for c in range(controls.count()):
            control = controls.nth(c)
            before = view.screenshot()
            kind = control.evaluate("el => el.className")
            if control.locator("select").count():
                control.locator("select").select_option(index=1)
            elif control.locator("button").count():
                control.locator("button:not(.mod-active)").first.click()
            elif control.locator(".noUi-handle").count():
                control.locator(".noUi-handle").first.focus()
                page.keyboard.press("ArrowRight")
            else:
                problems.append(f"explorer {e}: control {c} ({kind}) is neither a menu, buttons nor a slider")
                continue
            page.wait_for_timeout(400)
            if view.screenshot() == before:
                problems.append(f"explorer {e}: moving control {c} ({kind}) did not change its view (jslink broken?)")
    return problems


def check_linked_sliders(page, limit: int = 6) -> list[str]:
    """A slider above precomputed views must change the view with no kernel (a jslink)."""
    problems = []
    panels = page.locator(".widget-vbox:has(> .widget-slider)")
    for i in range(min(panels.count(), limit)):
        panel = panels.nth(i)
        view = panel.locator(":scope > :last-child")
        before = view.screenshot()
        panel.locator(".noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        if view.screenshot() == before:
            problems.append(f"slider panel {i}: moving the slider did not change its view (jslink broken?)")
    return problems


def main(root: str = "_build/html") -> int:
    root_path = Path(root).resolve()
    if not (root_path / "index.html").exists():
        print(f"FAIL: {root_path / 'index.html'} does not exist — did the book build?")
        return 1
    notebooks = {p.stem for p in Path("book").glob("*.ipynb")}
    shots = root_path.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    server, port = serve(root_path)
    failures, external = {}, set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("requestfailed", lambda r: external.add(r.url) if "127.0.0.1" not in r.url else None)
        local_failures = []
        page.on(
            "response",
            lambda r: local_failures.append(f"{r.status} {r.url}") if r.status >= 400 and "127.0.0.1" in r.url else None,
        )
        for html in book_pages(root_path):
            rel = html.relative_to(root_path).as_posix()
            local_failures.clear()
            problems = check_page(page, f"http://127.0.0.1:{port}/{rel}", html.stem in notebooks)
            problems += [f"missing local resource {f}" for f in local_failures]
            page.screenshot(path=str(shots / (rel.replace("/", "__").removesuffix(".html") + ".png")), full_page=True)
            status = "ok" if not problems else "FAIL"
            print(f"[{status}] {rel}" + "".join(f"\n    - {x}" for x in problems))
            if problems:
                failures[rel] = problems
        browser.close()
    server.shutdown()
    expected = {f"{Path(f).with_suffix('.html').as_posix()}" for f in _toc_files()}
    seen = {p.relative_to(root_path).as_posix() for p in book_pages(root_path)}
    for missing in sorted(expected - seen):
        failures[missing] = ["page listed in _toc.yml was not built"]
        print(f"[FAIL] {missing}: listed in _toc.yml but not built")
    if external:  # the book must work offline: anything fetched from elsewhere is a failure
        failures["(any page)"] = sorted(external)
        print("[FAIL] requests that need the internet (blocked here):")
        for url in sorted(external):
            print(f"    {url}")
    print(f"screenshots: {shots}")
    print(json.dumps({"pages": len(seen), "failed": len(failures)}))
    return 1 if failures else 0


def _toc_files() -> list[str]:
    files = []
    for line in Path("_toc.yml").read_text().splitlines():
        line = line.strip()
        for key in ("root:", "- file:", "file:"):
            if line.startswith(key):
                files.append(line.split(":", 1)[1].strip())
                break
    return files


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

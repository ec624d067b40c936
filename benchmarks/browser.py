"""A report page opened in a real headless Chromium, with the network blocked, read from outside.

Used by ``tests/test_report.py`` (what the page shows), the report benchmark (how long the page
takes to draw 1,000 snapshots) and ``docs/report_screenshot.py`` (the README's picture). Driven
through Playwright's Python package with the system's Chromium (Debian's ``chromium``): no browser
download. Every request other than the page itself is refused and recorded; so is every console
error, page error and dialog.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_MS = 120_000
_CHARTS_JS = """() => Array.from(document.querySelectorAll('.chart')).map(el => {
  const box = el.parentElement.querySelector('h3');
  return {
    id: el.id || (el.dataset.metric !== undefined ? 'metric-' + el.dataset.metric
                                                  : 'curve-' + el.dataset.curve),
    heading: box ? box.textContent : '',
    points: el.querySelectorAll('svg g.points_marks path').length,
    svg: el.querySelectorAll('svg').length,
    texts: Array.from(el.querySelectorAll('svg text')).map(t => t.textContent),
    error: el.dataset.error || null,
  };
})"""


def chromium() -> str | None:
    """The Chromium executable: ``MLSNAP_CHROMIUM``, else the first one on PATH."""
    named = os.environ.get("MLSNAP_CHROMIUM")
    if named:
        return named
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why a page cannot be opened here (no Chromium, no Playwright), or None."""
    if chromium() is None:
        return "no Chromium on PATH (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright)"
    return None


@dataclass
class Chart:
    id: str
    heading: str
    points: int  # marks of the chart's "points" layer: one per snapshot (or checkpoint)
    svg: int
    texts: list[str]
    error: str | None


@dataclass
class Findings:
    """What the page did and showed."""

    url: str
    seconds: float  # from navigation until every chart was drawn
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # everything but the page itself
    dialogs: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    text: str = ""  # the page's visible text
    values: dict[str, Any] = field(default_factory=dict)  # what ``probe`` expressions gave
    screenshot: tuple[int, int, int] | None = None  # width, height, distinct colours

    def chart(self, heading_start: str) -> Chart:
        found = [c for c in self.charts if c.heading.startswith(heading_start)]
        assert len(found) == 1, f"{len(found)} charts titled {heading_start!r}: {self.charts}"
        return found[0]


Step = Callable[[Any], None]


def open_page(path: Path, *, steps: dict[str, Step] | None = None,
              probe: dict[str, str] | None = None, screenshot: Path | None = None,
              width: int = 1280, height: int = 900) -> dict[str, Findings]:
    """Open ``path``, wait for its charts, read them; then run each of ``steps`` (a name and a
    function given the Playwright page) and read the page again after each. ``probe``: JS
    expressions evaluated at the end (e.g. ``window.__pwned``). Returns findings by step name
    (``"loaded"`` first)."""
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    results: dict[str, Findings] = {}
    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium(), headless=True,
            args=["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                  "--no-first-run", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

            def on_dialog(d: Any) -> None:
                dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)

            def route(r: Any) -> None:
                if r.request.url == url:
                    r.continue_()
                else:
                    requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=READY_TIMEOUT_MS)
            results["loaded"] = _read(page, url, time.perf_counter() - started)
            for name, step in (steps or {}).items():
                started = time.perf_counter()
                step(page)
                page.wait_for_selector("body[data-ready='1']", timeout=READY_TIMEOUT_MS)
                results[name] = _read(page, url, time.perf_counter() - started)
            last = results[list(results)[-1]]
            last.values = {k: page.evaluate(expr) for k, expr in (probe or {}).items()}
            if screenshot is not None:
                png = page.screenshot(path=str(screenshot), full_page=True)
                last.screenshot = colours(browser, png)
        finally:
            browser.close()
    for found in results.values():
        found.console_errors, found.requests, found.dialogs = errors, requests, dialogs
    return results


def _read(page: Any, url: str, seconds: float) -> Findings:
    charts = [Chart(**c) for c in page.evaluate(_CHARTS_JS)]
    return Findings(url, seconds, charts=charts, text=page.inner_text("body"))


def redraw(page: Any, action: Callable[[], None]) -> None:
    """Run ``action`` (a change of a control) and let the page start drawing again."""
    page.evaluate("document.body.dataset.ready = 'changing'")
    action()


# --------------------------------------------------------------------------- screenshots

_COLOURS_JS = """async (data) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + data;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < px.length; i += 4) seen.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
  return [canvas.width, canvas.height, seen.size];
}"""


def colours(browser: Any, png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct colours) of a PNG, decoded by the browser itself: a blank page
    has one or two colours, a page of charts and text hundreds."""
    page = browser.new_page()
    try:
        page.set_content("<!DOCTYPE html><title>pixels</title>")
        width, height, count = page.evaluate(_COLOURS_JS, base64.b64encode(png).decode())
        return int(width), int(height), int(count)
    finally:
        page.close()

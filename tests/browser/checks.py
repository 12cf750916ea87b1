"""What every browser test checks on a page, as a person at the screen would: it loads
without a console error or a failed request, nothing is wider than the screen, and a
screenshot of it is kept (artifacts/screenshots/, kept by CI as the test's artifact)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Kept by CI with the test results; gitignored.
SCREENSHOTS = REPO / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# A hashrate as the pages write it: "12.35 kH/s", "0 H/s".
HASHRATE = re.compile(r"(\d+(?:[.,]\d+)*)\s*([kMGTPE]?)H/s")
UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


@dataclass
class Watched:
    """A page with what went wrong on it so far: console errors, uncaught exceptions,
    failed requests and error responses (other than ``expect_status`` for the page
    itself)."""

    page: Any
    problems: list[str] = field(default_factory=list)

    def open(self, url: str, *, expect_status: int = 200) -> Any:
        response = self.page.goto(url, wait_until="load")
        assert response is not None, f"no response for {url}"
        # What the browser fetches on its own after the load (the favicon) counts too.
        self.page.wait_for_load_state("networkidle")
        assert response.status == expect_status, (
            f"{url} answered {response.status}, expected {expect_status}")
        return response

    def text(self) -> str:
        return self.page.inner_text("body")

    def check_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)

    def scroll_width(self) -> tuple[int, int]:
        """(the document's width, the viewport's width) in CSS pixels."""
        width, viewport = self.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]")
        return int(width), int(viewport)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000, f"empty screenshot {path}"
        return path


@contextmanager
def watched_page(browser: Any, *, viewport: dict[str, int] = DESKTOP, mobile: bool = False,
                 color_scheme: str = "light", main_status: int = 200,
                 javascript: bool = True, permissions: tuple[str, ...] = ()
                 ) -> Iterator[Watched]:
    """A fresh browser context and page, watched for errors; closed at the end."""
    options: dict[str, Any] = {"viewport": viewport, "color_scheme": color_scheme,
                               "java_script_enabled": javascript,
                               "permissions": list(permissions)}
    if mobile:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    context = browser.new_context(**options)
    try:
        page = context.new_page()
        watched = Watched(page)
        page_urls: set[str] = set()

        def on_console(message: Any) -> None:
            if message.type != "error":
                return
            # The one console line Chromium writes for an expected error status of the
            # page itself (a 404 or 400 page) is the status, not a fault of the page.
            location = (message.location or {}).get("url", "")
            if main_status != 200 and location in page_urls and \
                    "Failed to load resource" in message.text:
                return
            watched.problems.append(f"console error: {message.text} ({location})")

        def on_response(response: Any) -> None:
            if response.request.is_navigation_request() and \
                    response.request.frame == page.main_frame:
                page_urls.add(response.url)
                if response.status == main_status:
                    return
            if response.status >= 400:
                watched.problems.append(f"HTTP {response.status}: {response.url}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: watched.problems.append(
            f"request failed: {request.url} ({request.failure})"))
        page.on("response", on_response)
        yield watched
    finally:
        context.close()


def hashrates(text: str) -> list[tuple[float, float]]:
    """Every hashrate written in ``text``: (hashes per second, half the last written
    digit's worth in hashes per second, the rounding it may carry)."""
    found = []
    for number, unit in HASHRATE.findall(text):
        digits = number.replace(",", "")
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        scale = UNITS[unit]
        found.append((float(digits) * scale, 0.5 * 10**-decimals * scale))
    return found


def relative_luminance(css_color: str) -> float:
    """Given a CSS ``rgb(r, g, b)`` or ``rgba(...)`` colour, return its WCAG relative
    luminance (0 black, 1 white)."""
    values = [float(v) for v in re.findall(r"[\d.]+", css_color)[:3]]
    assert len(values) == 3, f"not an rgb() colour: {css_color!r}"

    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in values)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def page_colours(page: Any) -> tuple[str, str]:
    """(the background a person sees behind the text, the body's text colour): the
    body's background, else the root element's, else the canvas (white)."""
    return page.evaluate("""() => {
        const transparent = c => c === 'transparent' || c === 'rgba(0, 0, 0, 0)';
        const body = getComputedStyle(document.body);
        const root = getComputedStyle(document.documentElement);
        let background = body.backgroundColor;
        if (transparent(background)) background = root.backgroundColor;
        if (transparent(background)) background = 'rgb(255, 255, 255)';
        return [background, body.color];
    }""")

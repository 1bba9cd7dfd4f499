"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live_server.

- `browser`: one headless Chromium for the browser tests (skipped, with the reason, when
  /usr/bin/chromium or Playwright is missing — failed instead when PROFILEOPS_REQUIRE_BROWSER=1;
  PROFILEOPS_CHROMIUM names another binary).
- `open_page(viewport=VIEWPORT)`: a page in a fresh browser context (its own cookies, so one
  test can act as several users) at a laptop's 1366×768, or PHONE's 390×844 (VIEWPORTS names
  both for parametrised tests); `page` is one such page. Every console error and
  uncaught page error on any of them fails the test at teardown.
- `login(page, user)`: signs in through the admin's own login form.
- `screenshot(page, name)`: a full-page PNG in test-artifacts/screenshots/ (gitignored; CI keeps
  it as an artefact). A failing test also leaves FAILED-<test>-<n>.png of each of its pages.

Users come from tests/conftest.py's make_user, whose password is "pw-<username>".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("PROFILEOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}  # a current phone in portrait, CSS pixels
VIEWPORTS = {"laptop": VIEWPORT, "phone": PHONE}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Long enough for a cold live server on a busy 2-core CI machine, short enough to fail fast.
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    # A machine without Chromium skips; CI can set PROFILEOPS_REQUIRE_BROWSER=1 so that a failed
    # Chromium install fails the run instead of passing it with the browser tests skipped.
    if os.environ.get("PROFILEOPS_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{reason}, and PROFILEOPS_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM} (Debian package 'chromium'; .ci/run "
                     "installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[dev]')")
    # Playwright's sync API keeps an asyncio event loop running in this thread, so Django's
    # async-safety guard would refuse every ORM call the test makes (SynchronousOnlyOperation).
    # The tests are plain synchronous code; lift the guard only while Playwright runs — hence
    # package scope rather than session scope: the loop and the lifted guard end with the
    # browser tests instead of leaking into the rest of the suite.
    for stale in SCREENSHOTS.glob("FAILED-*.png"):  # from an earlier run: would mislead
        stale.unlink()
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class ConsoleErrors(list):
    """What went wrong in the pages of one test: console errors and uncaught exceptions."""

    def watch(self, page: Any) -> None:
        page.on("console", lambda msg: self._console(page, msg))
        page.on("pageerror", lambda error: self.append(f"{page.url}: uncaught {error}"))

    def _console(self, page: Any, msg: Any) -> None:
        if msg.type == "error":
            location = msg.location.get("url") or page.url
            self.append(f"{location}: {msg.text}")


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture
def open_page(request, browser, live_server, console_errors) -> Iterator[Callable[[], Any]]:
    contexts = []

    def _open(viewport: dict[str, int] = VIEWPORT) -> Any:
        context = browser.new_context(viewport=viewport, base_url=live_server.url,
                                      is_mobile=viewport["width"] < 600,
                                      has_touch=viewport["width"] < 600)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console_errors.watch(page)
        return page

    yield _open
    if request.node.stash.get(_CALL_FAILED, False):
        # What each page showed when the test failed, for whoever reads the CI artefacts.
        for i, context in enumerate(contexts, 1):
            for page in context.pages:
                screenshot(page, f"FAILED-{request.node.name}-{i}")
    for context in contexts:
        # Let requests the page's own scripts started (the live diff's reads) finish first: the
        # live server would otherwise still be writing while the test database is flushed, which
        # PostgreSQL can answer with a deadlock.
        for page in context.pages:
            try:
                page.wait_for_load_state("networkidle", timeout=10_000)
            except Exception:  # noqa: BLE001 - a page that never idles is closed all the same
                pass
        context.close()
    if console_errors:
        pytest.fail("Errors in the browser console:\n" + "\n".join(console_errors),
                    pytrace=False)


@pytest.fixture
def page(open_page) -> Any:
    return open_page()


def login(page: Any, user: Any) -> None:
    """Sign in through the admin login form and land on the admin index."""
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill("pw-" + user.get_username())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin/$"))


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG of what the page shows now; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# The admin clips some boxes (.form-row has overflow: hidden), so a page can be as wide as the
# window while text runs out of sight: look for both.
_OVERFLOW_JS = """
() => {
  const width = window.innerWidth;
  const found = [];
  const pageWidth = document.scrollingElement.scrollWidth;
  if (pageWidth > width) found.push(`the page is ${pageWidth}px wide`);
  const beyond = (el) => el.getBoundingClientRect().right > width + 1;
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || !beyond(el) || el.closest(".visually-hidden")) continue;
    if (el.parentElement && beyond(el.parentElement)) continue;  // name the outermost only
    const classes = typeof el.className === "string" ? el.className.trim() : "";
    found.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}` +
               `${classes ? "." + classes.split(/\\s+/).join(".") : ""} reaches ${Math.round(box.right)}px`);
  }
  return found.slice(0, 10);
}
"""


def sideways_overflow(page: Any) -> list[str]:
    """What makes the page scroll sideways or reaches past the window's right edge (clipped or
    not); empty when everything fits the window's width."""
    return page.evaluate(_OVERFLOW_JS)

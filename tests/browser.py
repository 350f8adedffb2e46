"""Debian's Chromium driven by Playwright, and the few things a user does in Jupyter Notebook 7.

No browser is downloaded (that cannot work here): Playwright drives /usr/bin/chromium.
Public URLs of the fake agent are under .ngrok.localhost, which Chromium resolves to
loopback by itself. Each step's screenshot lands in test-artifacts/browser/TEST/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from conftest import REPO, descendants, pid_alive, wait_until
from playwright.sync_api import BrowserContext, Locator, Page, ViewportSize, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # *.localhost must be reached directly
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
VIEWPORT: ViewportSize = {"width": 1000, "height": 700}
TIMEOUT_MS = 60_000  # page loads on a busy 2-core machine


class Browser:
    """One Chromium profile; `shot` keeps a numbered screenshot of a page."""

    def __init__(self, context: BrowserContext, shots: Path) -> None:
        self.context = context
        self.shots = shots
        self._count = 0

    def new_page(self) -> Page:
        """A new tab; the first is the one Chromium opened with the profile."""
        blank = [page for page in self.context.pages if page.url == "about:blank"]
        return blank[0] if blank else self.context.new_page()

    def shot(self, page: Page, name: str) -> Path:
        self._count += 1
        path = self.shots / f"{self._count:02d}-{name}.png"
        page.screenshot(path=path)
        return path

    def shoot_every_page(self, name: str) -> None:
        """What each tab shows when a test failed."""
        for page in self.context.pages:
            with contextlib.suppress(Exception):
                self.shot(page, name)


@contextlib.contextmanager
def chromium(profile: Path, test_name: str) -> Iterator[Browser]:
    """Chromium with a fresh profile; every process it started is killed by pid at the end."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: these tests drive Debian's Chromium, never a downloaded one. "
            "Install it: sudo apt-get install -y chromium   (scripts/test.sh does).",
            pytrace=False,
        )
    shots = ARTIFACTS / re.sub(r"[^\w.-]+", "_", test_name)
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    before = set(descendants(os.getpid()))
    with sync_playwright() as playwright:
        # Chromium's processes: whatever runs under Playwright's driver, which has just started.
        drivers = set(descendants(os.getpid())) - before
        started: set[int] = set()
        context = None
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport=VIEWPORT,
            )
            started.update(pid for driver in drivers for pid in descendants(driver))
            context.set_default_timeout(TIMEOUT_MS)
            yield Browser(context, shots)
        finally:
            started.update(pid for driver in drivers for pid in descendants(driver))
            if context is not None:
                with contextlib.suppress(Exception):
                    context.close()
            for pid in started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in started:
                wait_until(lambda p=pid: not pid_alive(p), 10, f"Chromium pid {pid} to end")  # type: ignore[misc]


# -- Jupyter Notebook 7, as a user clicks through it ----------------------------------


WARNING_BUTTON = "Visit Site"  # ngrok's browser warning page on the free plan


def click_through_warning(page: Page, browser: Browser) -> bool:
    """When ngrok's browser warning page shows (free plan), screenshot it and click its button."""
    page.wait_for_selector(f"#password_input, .jp-DirListing-content, button:has-text('{WARNING_BUTTON}')")
    button = page.get_by_role("button", name=WARNING_BUTTON)
    if not button.count():
        return False
    browser.shot(page, "ngrok-browser-warning")
    button.click()
    return True


def log_in(page: Page, url: str, password: str, browser: Browser, shot: str) -> bool:
    """Open the URL, click through ngrok's warning page if shown, see the login page (screenshot),
    log in, land on the file list. Whether the warning page was shown."""
    page.goto(url)
    warned = click_through_warning(page, browser)
    page.wait_for_selector("#password_input")
    browser.shot(page, shot)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/tree"))
    page.wait_for_selector(".jp-DirListing-content:visible")
    return warned


def new_notebook(tree: Page, kernel: str | None = None) -> Page:
    """New > Python 3 (or the kernel named `kernel`) on the file list: the notebook opens in a new tab."""
    tree.get_by_text("New", exact=True).click()
    item = re.compile(r"Python 3") if kernel is None else re.compile(re.escape(kernel))
    with tree.context.expect_page() as opened:
        tree.get_by_role("menuitem", name=item).click()
    notebook = opened.value
    wait_for_kernel(notebook)
    return notebook


def open_notebook(tree: Page, name: str) -> Page:
    """Double-click a notebook in the file list: it opens in a new tab."""
    with tree.context.expect_page() as opened:
        tree.locator(".jp-DirListing-content").get_by_text(name, exact=True).dblclick()
    notebook = opened.value
    wait_for_kernel(notebook)
    return notebook


def wait_for_kernel(notebook: Page) -> None:
    """The notebook's kernel runs and is idle, and so says the indicator beside its name.

    The indicator alone says idle before the notebook even has a kernel, so the page also
    asks the server, with its own cookies, for the notebook's session.
    """
    notebook.wait_for_selector(".jp-Notebook .jp-Cell")
    path = unquote(urlsplit(notebook.url).path.split("/notebooks/", 1)[1])
    ask = "p => fetch('/api/sessions').then(r => r.json()).then(s => s.filter(x => x.path === p))"

    def ready() -> bool:
        sessions = notebook.evaluate(ask, path)
        idle = bool(sessions) and sessions[0]["kernel"]["execution_state"] == "idle"
        return idle and notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() == 1

    wait_until(ready, TIMEOUT_MS / 1000, f"the kernel of {path} to be idle", 0.2)


def cells(notebook: Page) -> Locator:
    return notebook.locator(".jp-Notebook .jp-Cell")


def run_in_new_cell(notebook: Page, code: str) -> int:
    """Type code into the last cell (adding one if it is used) and press Shift+Enter; its index."""
    count = cells(notebook).count()
    last = cells(notebook).nth(count - 1)
    if last.locator(".cm-content").inner_text().strip():
        last.locator(".cm-content").click()
        notebook.keyboard.press("Escape")
        notebook.keyboard.press("b")  # command mode: insert a cell below
        wait_until(lambda: cells(notebook).count() == count + 1, 10, "a new cell")
        count += 1
    index = count - 1
    editor = cells(notebook).nth(index).locator(".cm-content")
    editor.click()
    # insert_text, not typing: the editor would auto-indent and close brackets on its own.
    notebook.keyboard.insert_text(code)
    notebook.keyboard.press("Shift+Enter")
    return index


def prompt(notebook: Page, index: int) -> str:
    """A cell's prompt: '[ ]:' never run, '[*]:' running, '[3]:' done."""
    text: str = cells(notebook).nth(index).locator(".jp-InputPrompt").inner_text()
    return text.strip()


def output(notebook: Page, index: int) -> str:
    area = cells(notebook).nth(index).locator(".jp-OutputArea-output")
    return "\n".join(area.all_inner_texts())


def wait_for_output(notebook: Page, index: int, expected: str, timeout: float) -> None:
    wait_until(lambda: expected in output(notebook, index), timeout, f"cell {index} to show {expected!r}", 0.2)


def save(notebook: Page, path: Path, expected: str) -> dict[str, Any]:
    """Ctrl+S, then wait until the file on disk holds `expected` in an output; the notebook as JSON."""
    notebook.keyboard.press("Control+s")

    def saved() -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if expected in json.dumps(data) else None

    result: dict[str, Any] = wait_until(saved, 30, f"{path.name} to be saved with {expected!r}", 0.2)
    return result

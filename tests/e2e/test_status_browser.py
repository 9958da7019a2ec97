"""The status page in a real browser: headless Chromium against `tool-worker demo`.

Needs Debian's ``chromium`` and ``chromium-driver``; without them the test skips, unless
``REQUIRE_CHROMIUM`` is set (CI sets it), when it fails. The screenshots are kept in the
test's output folder; ``STATUS_SCREENSHOT=docs/status-page.png`` also writes the README's.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.process import ROOT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from selenium.webdriver import Chrome

pytestmark = [pytest.mark.e2e, pytest.mark.no_blockbuster]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
URL_LINE = re.compile(rb"status page: (http://127\.0\.0\.1:\d+/status)")


@pytest.fixture
def demo() -> Iterator[str]:
    """`tool-worker demo` on a free port; yields the status page's URL from its output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", "--port", "0", "--runs", "8", "--linger", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    output, deadline = b"", time.monotonic() + 20
    try:
        while (match := URL_LINE.search(output)) is None:
            assert time.monotonic() < deadline, f"no status page URL in: {output.decode()}"
            ready, _, _ = select.select([process.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, f"the demo ended early: {output.decode()}"
                output += chunk
        yield match.group(1).decode()
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()


@pytest.fixture
def browser() -> Iterator[Chrome]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("REQUIRE_CHROMIUM"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service

    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1000,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until true. The page replaces its tables every second, so an element
    found a moment ago can be gone when read: that reading is retried, not a failure."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except StaleElementReferenceException:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_when_settled(read: Callable[[], str | None], what: str) -> str | None:
    """``read()``, retried while the element it reads is replaced by the page's refresh."""
    value: list[str | None] = []

    def done() -> bool:
        value[:] = [read()]
        return True

    wait_until(done, what)
    return value[0]


def test_the_status_page_shows_the_demo_live_in_a_browser(
    browser: Chrome, demo: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """It loads without console errors, lists the slow round in flight, and updates itself."""
    from selenium.webdriver.common.by import By

    browser.get(demo)
    assert browser.title == "tool-worker status"

    # The browser starts first (fixture order), so the demo's 3 s round is still in flight.
    def slow_round_in_flight() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#in-flight tr[data-run]")
        return any("sleep" in row.text for row in rows)

    wait_until(slow_round_in_flight, "the slow round in flight")
    def generated() -> str | None:
        return browser.find_element(By.ID, "status").get_attribute("data-generated")

    first = read_when_settled(generated, "the page's generation time")
    wait_until(lambda: generated() != first, "the page to refresh itself")
    browser.save_screenshot(str(tmp_path / "status-page-in-flight.png"))

    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#recent tbody tr")) >= 5,
               "finished rounds")
    browser.save_screenshot(str(tmp_path / "status-page.png"))
    browser.set_window_size(412, 915)  # a phone
    browser.save_screenshot(str(tmp_path / "status-page-phone.png"))
    keep = os.environ.get("STATUS_SCREENSHOT")
    if keep:
        shutil.copy(tmp_path / "status-page-in-flight.png", ROOT / keep)
    record_property("screenshots", str(tmp_path))  # in the JUnit report; -rA shows it too

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

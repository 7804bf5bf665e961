"""Headless Chromium for the report and UI tests: Debian's browser, never a download."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def require_browser() -> None:
    """Skip when Chromium or its driver is missing, unless INTEGRITY_REQUIRE_BROWSER=1 (CI)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        why = (f"{' and '.join(missing)} not found: the browser tests need Debian's chromium "
               "and chromium-driver packages")
        if os.environ.get("INTEGRITY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why} (INTEGRITY_REQUIRE_BROWSER=1 requires them)")
        pytest.skip(why)


def headless_chromium(width: int, height: int) -> Iterator:
    """A Selenium driver on headless Debian Chromium, quit when the generator closes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as env:
        # With the driver path given Selenium skips its manager; if it ever did not, a manager
        # path that is no file makes it fail here instead of downloading a browser.
        env.setenv("SE_MANAGER_PATH", "/nonexistent/selenium-manager")
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                                  options=options)
    try:
        yield driver
    finally:
        driver.quit()

"""Headless Chromium (Debian's chromium + chromium-driver) through Selenium, for checking HTML the toolkit writes."""

from __future__ import annotations

import contextlib
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# No GPU, no sandbox (root in CI), nothing fetched behind the page's back.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,900",
)


@contextlib.contextmanager
def page(path: Path):
    """Chromium showing the file at `path`; yields the Selenium driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(Path(path).resolve().as_uri())
        yield driver
    finally:
        driver.quit()


def rects(driver, selector: str, root=None) -> list[dict]:
    """Layout boxes (x, y, width, height) of the elements matching a CSS selector."""
    return driver.execute_script(
        "return Array.from((arguments[1] || document).querySelectorAll(arguments[0]))"
        ".map(e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; });",
        selector,
        root,
    )


def screenshot(driver, path: Path) -> None:
    """The whole page as PNG: the window grows to the document's height first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(400, height + 20))
    driver.save_screenshot(str(path))


if __name__ == "__main__":  # python3 tests/helpers/browser.py PAGE.html SHOT.png (make picture)
    import sys

    with page(Path(sys.argv[1])) as driver:
        screenshot(driver, Path(sys.argv[2]))

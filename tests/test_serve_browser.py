"""The live page in a real browser: Debian's headless Chromium driven by Selenium.

The page loads, the MJPEG <img> shows frames that change, and the label and FPS text update. Skipped only
when this machine has no chromium binary (CI installs it: `.ci/run`).
"""

from __future__ import annotations

import shutil

import pytest

from serve_helpers import LABELS, Publisher, start_server, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="no chromium/chromedriver binary (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,700",
                "--no-proxy-server"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def _video_pixels(driver) -> str:
    """The <img>'s current frame, drawn into a canvas (same origin, so its pixels are readable)."""
    return driver.execute_script("""
        const img = document.getElementById('video');
        if (!img.naturalWidth) return '';
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const ctx = canvas.getContext('2d');
        ctx.drawImage(img, 0, 0);
        return canvas.toDataURL('image/png');
    """)


def test_page_shows_changing_frames_label_and_fps(browser):
    view, server = start_server()
    publisher = Publisher(view, period=0.02)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        assert browser.title == "tledge live"
        assert wait_until(lambda: browser.execute_script("return document.getElementById('video').naturalWidth") == 64,
                          timeout=20)
        frames = set()
        assert wait_until(lambda: frames.add(_video_pixels(browser)) or len(frames - {""}) >= 3, timeout=20, step=0.1)
        labels = set()
        assert wait_until(lambda: labels.add(_text(browser, "label")) or len(labels & set(LABELS)) >= 2, timeout=20,
                          step=0.1)  # the label changes every 10 frames
        assert wait_until(lambda: _text(browser, "fps") not in ("", "–") and float(_text(browser, "fps")) > 0, timeout=10)
        assert _text(browser, "state") == "live"
        assert "inference" in _text(browser, "latency") and "%" in _text(browser, "topk")
        assert len(view.stats()["viewers"]) == 1  # the browser is the one MJPEG viewer
    finally:
        publisher.stop()
        server.close()

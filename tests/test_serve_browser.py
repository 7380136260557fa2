"""The live page in real browsers: Debian's headless Chromium driven by Selenium, and headless Firefox.

Chromium: the page loads, the MJPEG <img> shows frames that change, and the label and FPS text update.
Firefox (no WebDriver here): its own screenshot shows the stream's frame and the numbers read from /stats.
Each is skipped only when its browser binary is missing (CI installs them: `.ci/run`).
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from serve_helpers import LABELS, Publisher, start_server, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

needs_chromium = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
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


@needs_chromium
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


FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")


@pytest.mark.skipif(FIREFOX is None, reason="no firefox binary (apt-get install firefox-esr)")
def test_firefox_shows_the_stream_and_the_numbers(tmp_path):
    """Firefox has no driver here, so it takes its own headless screenshot: the MJPEG frame (magenta) must be
    on it, and the top-k bars (the page's green), which exist only once its script has read /stats."""
    import subprocess

    import cv2
    import numpy as np

    from tledge.runtime.serve import LiveServer, LiveView, ServeOptions

    view = LiveView(ServeOptions(host="127.0.0.1", port=0), {"backend": "fake", "source": "test"})
    server = LiveServer(view)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[60:] = (255, 0, 255)  # RGB magenta below the overlay band
    record = {"index": 0, "source": "x", "label": "cat", "prob": 0.8, "latency_ms": 5.0,
              "topk": [{"label": "cat", "index": 0, "prob": 0.8}, {"label": "dog", "index": 1, "prob": 0.2}]}
    stop = threading.Event()

    def publish_until_stopped():
        for _ in range(3000):  # bounded: at most ~90 s
            if stop.wait(0.03):
                return
            view.publish(frame, record, {"fps": 30.0})

    publisher = threading.Thread(target=publish_until_stopped, daemon=True)
    publisher.start()
    shot = tmp_path / "firefox.png"
    try:
        subprocess.run([FIREFOX, "--headless", "--window-size=900,600", "--screenshot", str(shot),
                        f"http://127.0.0.1:{server.port}/"], env={**os.environ, "HOME": str(tmp_path)},
                       capture_output=True, timeout=120, check=True)
    finally:
        stop.set()
        publisher.join(5)
        server.close()
    image = cv2.imread(str(shot))  # BGR
    b, g, r = (image[:, :, i].astype(int) for i in range(3))
    magenta = (r > 200) & (g < 70) & (b > 200)
    accent = (abs(r - 0x4C) < 25) & (abs(g - 0xD9) < 25) & (abs(b - 0x7B) < 25)
    assert magenta.sum() > 20000  # the video frame, scaled into the page
    assert accent.sum() > 500  # the top-k bars and the "live" state drawn from /stats

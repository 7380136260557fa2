"""Make docs/serve.png: the live page of `tledge predict ... --serve`, as headless Chromium shows it.

    .venv/bin/python scripts/serve_screenshot.py MODEL.onnx PHOTO... [--out docs/serve.png]

Writes a short camera-sized clip from the given photos with OpenCV's VideoWriter (in a temporary folder:
the photos are never copied into the repository), serves it with `tledge predict MODEL CLIP --serve`,
opens the page in Debian's chromium through Selenium, waits for live numbers, and saves a screenshot.
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_clip(photos: list[str], path: Path, size=(480, 360), fps: float = 10.0, seconds_each: float = 3.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for photo in photos:
        image = cv2.imread(photo, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {photo}")
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        for _ in range(int(fps * seconds_each)):
            writer.write(image)
    writer.release()
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_stats(port: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
                stats = json.loads(response.read())
            if stats["frames"]["seen"] > 20:
                return stats
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the live view did not come up")


def screenshot(url: str, out: Path, wait_s: float) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:  # the page itself is 900x640 (a window size would include the browser's own bars)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 900, "height": 640, "deviceScaleFactor": 1, "mobile": False})
        driver.get(url)
        time.sleep(wait_s)  # let the FPS and latency windows fill
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:  # 256 colours keep the README image small (~170 kB instead of ~420 kB); Pillow comes with tledge[train]
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB")
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    except ImportError:
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(out), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--out", default=str(REPO / "docs/serve.png"))
    parser.add_argument("--wait", type=float, default=4.0, help="seconds on the page before the screenshot")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(args.photos, Path(tmp) / "scenes.avi")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen([sys.executable, "-m", "tledge", "predict", args.model, str(clip), "--serve",
                                    str(port), "--topk", "3"], cwd=REPO, env=env)
        try:
            wait_for_stats(port)
            screenshot(f"http://127.0.0.1:{port}/", Path(args.out), args.wait)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

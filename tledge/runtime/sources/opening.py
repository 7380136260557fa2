"""`open_source`: from what the user typed (camera index, csi://N, URL, video, image, folder, glob) to a Source,
or a one-line TledgeError saying what is wrong."""

from __future__ import annotations

import glob as globlib
import os
import re
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from tledge.errors import TledgeError
from tledge.paths import GLOB_CHARS
from tledge.preprocess import is_image_file
from tledge.runtime.sources.base import Clock, Source
from tledge.runtime.sources.images import ImageFilesSource, find_images, find_other_files
from tledge.runtime.sources.live import LiveSource, csi_pipeline
from tledge.runtime.sources.video import VIDEO_EXTENSIONS, VideoFileSource

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def _open_capture(target, api: int | None = None):
    capture = cv2.VideoCapture(target, api) if api is not None else cv2.VideoCapture(target)
    return capture if capture.isOpened() else None


def _gstreamer_available() -> bool:
    return any("GStreamer" in line and "YES" in line for line in cv2.getBuildInformation().splitlines())


def _camera_api() -> int:
    return cv2.CAP_V4L2 if os.name == "posix" and os.path.isdir("/dev") and Path("/sys/class/video4linux").exists() else cv2.CAP_ANY


def open_source(spec: str | int, *, prepare: Callable[[np.ndarray], np.ndarray] | None = None, workers: int = 2,
                prefetch: int = 32, retries: int = 3, retry_delay: float = 0.5, csi_size: tuple[int, int] = (1280, 720),
                csi_fps: int = 30, clock: Clock = time.perf_counter,
                decode_min_size: tuple[int, int] | None = None) -> Source:
    """Open what the user typed: "0" / "/dev/video1" (camera), "csi://0", a video, an image, a folder, a glob,
    or an rtsp/http URL. `prepare` (e.g. the card's preprocessing) runs in the decode pool for image files and
    in the reader thread for video files; `prefetch` is how many items those decode ahead. `decode_min_size`:
    image files decode large JPEGs at reduced scale, never below it (tledge.preprocess.decode_min_size)."""
    spec = str(spec).strip()
    if not spec:
        raise TledgeError("empty source; give a camera index, csi://N, a video, an image, a folder, a glob or a URL")
    if re.fullmatch(r"\d+", spec) or re.fullmatch(r"/dev/video\d+", spec):
        target = int(spec) if spec.isdigit() else spec
        capture = _open_capture(target, _camera_api()) or _open_capture(target)
        if capture is None:
            raise TledgeError(f"camera {spec} not found or busy (is it plugged in, and not used by another program?)")
        return LiveSource(spec, capture, reopen=lambda: _open_capture(target, _camera_api()) or _open_capture(target),
                          retries=retries, retry_delay=retry_delay, clock=clock)
    if spec.lower().startswith("csi://"):
        sensor = spec[6:]
        if not sensor.isdigit():
            raise TledgeError(f"bad CSI source {spec!r}; expected csi://N with N the sensor id, e.g. csi://0")
        if not _gstreamer_available():
            raise TledgeError("csi:// cameras need OpenCV built with GStreamer (JetPack's python3-opencv has it; "
                              "opencv-python wheels from PyPI do not)")
        pipeline = csi_pipeline(int(sensor), csi_size[0], csi_size[1], csi_fps)
        capture = _open_capture(pipeline, cv2.CAP_GSTREAMER)
        if capture is None:
            raise TledgeError(f"CSI camera {sensor} not found (nvarguscamerasrc could not open sensor-id={sensor}; "
                              "check the ribbon cable and `sudo systemctl restart nvargus-daemon`)")
        return LiveSource(spec, capture, reopen=lambda: _open_capture(pipeline, cv2.CAP_GSTREAMER), retries=retries,
                          retry_delay=retry_delay, clock=clock)
    if _is_url(spec):
        capture = _open_capture(spec, cv2.CAP_FFMPEG)
        if capture is None:
            raise TledgeError(f"cannot open stream {spec} (unreachable, wrong path, or not a video stream)")
        if spec.lower().startswith(("http://", "https://")) and (capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) > 0:
            # a video file served over HTTP has a frame count: it ends, where a live stream would be reopened
            return VideoFileSource(spec, capture, queue_size=prefetch, prepare=prepare, clock=clock)
        return LiveSource(spec, capture, reopen=lambda: _open_capture(spec, cv2.CAP_FFMPEG), retries=retries,
                          retry_delay=retry_delay, clock=clock)
    path = Path(spec).expanduser()
    if any(ch in spec for ch in GLOB_CHARS) and not path.exists():
        paths = sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if is_image_file(p) and Path(p).is_file())
        if not paths:
            raise TledgeError(f"no image files match {spec}")
        return ImageFilesSource(spec, paths, workers, prefetch, prepare, clock, decode_min_size)
    if path.is_dir():
        paths = find_images(path)
        others = find_other_files(path)
        if not paths:
            found = f"; found {len(others)} file(s) of other types, e.g. {others[0].name}" if others else ""
            raise TledgeError(f"no image files in {path} (looked for {', '.join(('.jpg', '.png', '.bmp', '.webp', '.tif'))}"
                              f"{found})")
        source = ImageFilesSource(spec, paths, workers, prefetch, prepare, clock, decode_min_size)
        source.ignored = [(str(p), f"unsupported file type {p.suffix.lower() or '(no extension)'}") for p in others]
        return source
    if path.is_file():
        if is_image_file(path):
            return ImageFilesSource(spec, [path], 1, 1, prepare, clock, decode_min_size)
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            capture = _open_capture(str(path))
            if capture is None:
                raise TledgeError(f"{path}: cannot open this video (unsupported codec or damaged file)")
            return VideoFileSource(spec, capture, queue_size=prefetch, prepare=prepare, clock=clock)
        raise TledgeError(f"{path}: unknown source type {path.suffix or '(no extension)'!r}; expected an image, a video "
                          f"({', '.join(VIDEO_EXTENSIONS[:5])}, …), a folder, a camera index or a URL")
    raise TledgeError(f"source not found: {spec} (no such file or folder; cameras are given as 0, /dev/video0 or csi://0)")

"""Where frames come from: camera, Jetson CSI camera, video file, RTSP/HTTP stream, image, folder, glob.

`open_source(spec)` returns a Source; iterating it yields `Item`s (source id, uint8 RGB frame or None with
an error, capture timestamp). Two kinds of behaviour:

- live sources (camera index, /dev/videoN, csi://N, rtsp/http URL): a capture thread keeps only the
  newest frame, so a slow model never builds up a backlog (latency stays bounded) and every frame that was
  replaced before the model took it is counted in `dropped`. A camera that stops delivering is retried a few
  times (reopened), then the source ends cleanly and says why in `stop_reason`.
- recorded sources (video file, image files): every item, in order, nothing dropped. Image files are decoded
  (and, if the predict loop asks, preprocessed) ahead of time in a small thread pool, so decoding the next
  batch overlaps inference on the current one. Unreadable images come out as items with `frame=None` and
  an error: the caller skips, counts and names them.

cv2 and numpy only (no torch).
"""

from __future__ import annotations

import glob as globlib
import os
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from tledge.errors import TledgeError
from tledge.image_files import find_images, find_other_files
from tledge.preprocess import is_image_file, load_image, to_rgb8

Clock = Callable[[], float]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mjpeg")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
GLOB_CHARS = ("*", "?", "[")

# Jetson CSI camera (Argus). The sensor gives NV12 in NVMM memory; nvvidconv moves it to CPU memory as BGRx,
# videoconvert makes BGR for OpenCV; appsink keeps one buffer and drops older ones (newest frame wins).
CSI_PIPELINE = (
    "nvarguscamerasrc sensor-id={sensor_id} ! "
    "video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1, format=(string)NV12 ! "
    "nvvidconv flip-method={flip} ! video/x-raw, width=(int){width}, height=(int){height}, format=(string)BGRx ! "
    "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
)


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The GStreamer pipeline string for a Jetson CSI camera, to open with cv2.CAP_GSTREAMER."""
    return CSI_PIPELINE.format(sensor_id=int(sensor_id), width=int(width), height=int(height), fps=int(fps), flip=int(flip))


@dataclass
class Item:
    """One frame or image. `frame` is uint8 RGB HxWx3, or None when it could not be read (`error` says why)."""

    source_id: str
    frame: np.ndarray | None
    timestamp: float  # when the frame exists: arrived from a live source, or its file read began (end-to-end start)
    index: int = 0
    error: str | None = None
    decode_ms: float = 0.0
    tensor: np.ndarray | None = None  # preprocessed CHW float32, when the source was given `prepare`
    preprocess_ms: float = 0.0
    ready: float | None = None  # clock time when decoded (and prepared): from here on it waits in a queue


def _stop_reader(source) -> None:
    """Stop a source's reader thread and release its cv2.VideoCapture (video files and live streams).

    A VideoCapture is not thread-safe: releasing it while the reader thread may still be inside grab()/read()
    (a thread slower than the join timeout to notice the stop) is a use-after-free risk in the decoder. So it
    is released here only once the thread has ended; a thread still running releases it itself."""
    source._stop.set()
    thread = source._thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=2.0)
        if thread.is_alive():
            return  # the reader's own exit path releases the capture (_release_capture)
    _release_capture(source)


def _release_capture(source) -> None:
    capture, source.capture = source.capture, None
    if capture is not None:
        try:
            capture.release()
        except Exception:  # noqa: BLE001 - a lost device may fail to release; nothing else to do
            pass


class Source:
    """Base: iterate for Items; `close()` releases devices and threads. Context manager."""

    kind = "source"
    live = False
    fps: float = 0.0  # nominal frame rate (for writing videos); 0 when unknown
    dropped = 0
    stop_reason: str | None = None

    def __init__(self, spec: str, clock: Clock = time.perf_counter):
        self.spec = spec
        self.clock = clock

    def __iter__(self) -> Iterator[Item]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        raise TypeError(f"{self.kind} source has no length")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------- image files
class ImageFilesSource(Source):
    """Image files, in order. Decoding (and `prepare`, e.g. preprocessing) runs in a thread pool that
    keeps `prefetch` items in flight ahead of the consumer; cv2 releases the GIL while it works."""

    kind = "images"

    def __init__(self, spec: str, paths: Sequence[Path], workers: int = 2, prefetch: int = 32,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, clock: Clock = time.perf_counter):
        super().__init__(spec, clock)
        self.paths = [Path(p) for p in paths]
        self.workers = max(1, int(workers))
        self.prefetch = max(1, int(prefetch))
        self.prepare = prepare
        self.ignored: list[tuple[str, str]] = []  # (path, reason): files of a folder that are not images
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Item:
        path = self.paths[index]
        start = self.clock()
        frame = load_image(path)
        decoded = self.clock()
        item = Item(str(path), frame, start, index=index, decode_ms=(decoded - start) * 1000.0, ready=decoded)
        if frame is None:
            item.error = "not a readable image" if path.is_file() else "file vanished"
        elif self.prepare is not None:
            item.tensor = self.prepare(frame)
            item.ready = self.clock()
            item.preprocess_ms = (item.ready - decoded) * 1000.0
        return item

    def __iter__(self) -> Iterator[Item]:
        if self.workers == 1 and self.prefetch == 1:
            for i in range(len(self.paths)):
                yield self._load(i)
            return
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tledge-decode")
        pending: deque = deque()
        next_index = 0
        try:
            while pending or next_index < len(self.paths):
                while next_index < len(self.paths) and len(pending) < self.prefetch:
                    pending.append(self._pool.submit(self._load, next_index))
                    next_index += 1
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --------------------------------------------------------------------------------------------- video files
class VideoFileSource(Source):
    """Every frame of a video file, in order (no drops). A reader thread decodes up to `queue_size` frames
    ahead through a bounded queue, so decoding overlaps inference but memory stays bounded."""

    kind = "video"

    def __init__(self, spec: str, capture, queue_size: int = 8, clock: Clock = time.perf_counter):
        super().__init__(spec, clock)
        self.capture = capture
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self.queue_size = max(1, int(queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = Path(spec).name

    def __iter__(self) -> Iterator[Item]:
        import queue

        buffer: queue.Queue = queue.Queue(self.queue_size)
        done = object()

        def reader():
            index = 0
            try:
                while not self._stop.is_set():
                    start = self.clock()
                    ok, frame = self.capture.read()
                    if not ok or frame is None:
                        break
                    rgb = to_rgb8(frame)
                    decoded = self.clock()
                    item = Item(f"{self.name}#{index}", rgb, start, index=index, decode_ms=(decoded - start) * 1000.0,
                                ready=decoded)
                    while not self._stop.is_set():
                        try:
                            buffer.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    index += 1
            finally:
                buffer.put(done)

        self._thread = threading.Thread(target=reader, name="tledge-video", daemon=True)
        self._thread.start()
        try:
            while True:
                item = buffer.get()
                if item is done:
                    return
                yield item
        finally:
            self._stop.set()
            while self._thread.is_alive():  # unblock a reader waiting on a full queue
                try:
                    buffer.get_nowait()
                except queue.Empty:
                    self._thread.join(0.05)
            self.close()

    def close(self) -> None:
        _stop_reader(self)


# --------------------------------------------------------------------------------------------- live sources
class LiveSource(Source):
    """A camera or stream read by a capture thread that keeps only the newest frame.

    `capture` is anything with `read() -> (ok, bgr_frame)` and `release()` (a cv2.VideoCapture, or a
    stand-in in tests); `reopen()` returns a fresh one (or None) after failures. A frame replaced before the
    consumer took it counts as dropped. After `retries` consecutive failed reads/reopens the source ends and
    `stop_reason` says so: the predict loop then finishes with its summary instead of hanging.
    """

    kind = "live"
    live = True

    def __init__(self, spec: str, capture, reopen: Callable[[], object] | None = None, retries: int = 3,
                 retry_delay: float = 0.5, frames_are_rgb: bool = False, clock: Clock = time.perf_counter):
        super().__init__(spec, clock)
        self.capture = capture
        self.reopen = reopen
        self.retries = int(retries)
        self.retry_delay = float(retry_delay)
        self.frames_are_rgb = frames_are_rgb
        fps = getattr(capture, "get", None)
        self.fps = float(fps(cv2.CAP_PROP_FPS) or 0.0) if fps else 0.0
        self.captured = 0
        self.dropped = 0
        self._latest: Item | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._thread: threading.Thread | None = None

    def _read_loop(self) -> None:
        failures = 0
        index = 0
        try:
            while not self._stop.is_set():
                try:
                    ok, arrived, frame = self._next_raw_frame()
                except Exception:  # noqa: BLE001 - a driver error is a failed read
                    ok, arrived, frame = False, 0.0, None
                if not ok or frame is None:
                    failures += 1
                    if failures > self.retries:
                        self.stop_reason = f"{self.spec}: no frames after {self.retries} retries (camera lost?)"
                        return
                    self._stop.wait(self.retry_delay)
                    if self.reopen is not None and not self._stop.is_set():
                        try:
                            if self.capture is not None:
                                self.capture.release()
                        except Exception:  # noqa: BLE001
                            pass
                        self.capture = self.reopen()
                    continue
                failures = 0
                rgb = to_rgb8(frame, already_rgb=self.frames_are_rgb)
                decoded = self.clock()
                item = Item(f"{self.spec}#{index}", rgb, arrived, index=index, decode_ms=(decoded - arrived) * 1000.0,
                            ready=decoded)
                index += 1
                with self._cond:
                    self.captured += 1
                    if self._latest is not None:
                        self.dropped += 1  # the consumer never saw the previous frame
                    self._latest = item
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            if self._stop.is_set():
                _release_capture(self)  # stopped from outside: the capture is this thread's to release

    def _next_raw_frame(self) -> tuple[bool, float, object]:
        """Wait for the next frame, then stamp it: (ok, arrival time, frame). The wait for a frame (a 25 fps
        stream's 40 ms) is not latency, so the clock starts when `grab()` returns; `retrieve()` (conversion
        of the grabbed frame) counts as capture/decode. A capture with only `read()` is stamped after it."""
        if self.capture is None:
            return False, 0.0, None
        if hasattr(self.capture, "grab") and hasattr(self.capture, "retrieve"):
            if not self.capture.grab():
                return False, 0.0, None
            arrived = self.clock()
            ok, frame = self.capture.retrieve()
            return bool(ok), arrived, frame
        ok, frame = self.capture.read()
        return bool(ok), self.clock(), frame

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._read_loop, name="tledge-capture", daemon=True)
            self._thread.start()

    def next_frame(self, timeout: float | None = None) -> Item | None:
        """The newest frame not yet taken (waits for one); None when the source has ended."""
        self.start()
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._latest is None and not self._ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.5)
            item, self._latest = self._latest, None
            return item

    def __iter__(self) -> Iterator[Item]:
        try:
            while True:
                item = self.next_frame()
                if item is None:
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        _stop_reader(self)


# --------------------------------------------------------------------------------------------- opening
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
                csi_fps: int = 30, clock: Clock = time.perf_counter) -> Source:
    """Open what the user typed: "0" / "/dev/video1" (camera), "csi://0", a video, an image, a folder, a glob,
    or an rtsp/http URL. `prepare` (e.g. the card's preprocessing) runs in the decode pool for image files."""
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
        return LiveSource(spec, capture, reopen=lambda: _open_capture(spec, cv2.CAP_FFMPEG), retries=retries,
                          retry_delay=retry_delay, clock=clock)
    path = Path(spec).expanduser()
    if any(ch in spec for ch in GLOB_CHARS) and not path.exists():
        paths = sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if is_image_file(p) and Path(p).is_file())
        if not paths:
            raise TledgeError(f"no image files match {spec}")
        return ImageFilesSource(spec, paths, workers, prefetch, prepare, clock)
    if path.is_dir():
        paths = find_images(path)
        others = find_other_files(path)
        if not paths:
            found = f"; found {len(others)} file(s) of other types, e.g. {others[0].name}" if others else ""
            raise TledgeError(f"no image files in {path} (looked for {', '.join(('.jpg', '.png', '.bmp', '.webp', '.tif'))}"
                              f"{found})")
        source = ImageFilesSource(spec, paths, workers, prefetch, prepare, clock)
        source.ignored = [(str(p), f"unsupported file type {p.suffix.lower() or '(no extension)'}") for p in others]
        return source
    if path.is_file():
        if is_image_file(path):
            return ImageFilesSource(spec, [path], 1, 1, prepare, clock)
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            capture = _open_capture(str(path))
            if capture is None:
                raise TledgeError(f"{path}: cannot open this video (unsupported codec or damaged file)")
            return VideoFileSource(spec, capture, clock=clock)
        raise TledgeError(f"{path}: unknown source type {path.suffix or '(no extension)'!r}; expected an image, a video "
                          f"({', '.join(VIDEO_EXTENSIONS[:5])}, …), a folder, a camera index or a URL")
    raise TledgeError(f"source not found: {spec} (no such file or folder; cameras are given as 0, /dev/video0 or csi://0)")

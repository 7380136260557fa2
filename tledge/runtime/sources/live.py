"""Live sources (cameras, Jetson CSI cameras, network streams): a capture thread keeps only the newest frame."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

import cv2

from tledge.preprocess import to_rgb8
from tledge.runtime.sources.base import Clock, Item, Source, release_capture, stop_reader

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
                release_capture(self)  # stopped from outside: the capture is this thread's to release

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
        stop_reader(self)

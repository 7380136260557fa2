"""Video files: every frame in order (nothing dropped), decoded ahead by a reader thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from tledge.preprocess import to_rgb8
from tledge.runtime.sources.base import Clock, Item, Source, lower_thread_priority, stop_reader

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mjpeg")


class VideoFileSource(Source):
    """Every frame of a video file, in order (no drops). A reader thread decodes (and, given `prepare`,
    preprocesses) up to `queue_size` frames ahead through a bounded queue, so that work overlaps inference
    but memory stays bounded. The queue should hold two batches: with less, the reader stalls while the
    model runs and the next batch then waits for frames decoded one by one."""

    kind = "video"

    def __init__(self, spec: str, capture, queue_size: int = 32,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, clock: Clock = time.perf_counter):
        super().__init__(spec, clock)
        self.capture = capture
        self.prepare = prepare
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self.queue_size = max(1, int(queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = Path(spec).name

    def __iter__(self) -> Iterator[Item]:
        buffer = BurstQueue(self.queue_size, self._stop)
        failed: list[BaseException] = []

        def reader():
            lower_thread_priority()
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
                    if self.prepare is not None:
                        item.tensor = self.prepare(rgb)
                        item.ready = self.clock()
                        item.preprocess_ms = (item.ready - decoded) * 1000.0
                    buffer.put(item)
                    index += 1
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                failed.append(exc)
            finally:
                buffer.finish()

        self._thread = threading.Thread(target=reader, name="tledge-video", daemon=True)
        self._thread.start()
        try:
            while True:
                item = buffer.get()
                if item is None:
                    if failed:  # e.g. `prepare` raised: the run fails as it would with the work in the loop
                        raise failed[0]
                    return
                yield item
        finally:
            self._stop.set()
            buffer.wake()  # a reader waiting for room sees the stop at once
            self.close()

    def close(self) -> None:
        stop_reader(self)


class BurstQueue:
    """A bounded queue that lets its producer refill only once it is half empty, so decoding runs in bursts
    between inference calls instead of one frame between every call (measured: less CPU per frame, and the
    model's caches stay warm). `put` waits for room or the stop event; `finish` marks the end (never waits)."""

    def __init__(self, size: int, stop: threading.Event):
        self.size = max(1, int(size))
        self.low_water = self.size // 2
        self.stop = stop
        self.items: deque = deque()
        self.finished = False
        self.cond = threading.Condition()

    def put(self, item: Item) -> None:
        with self.cond:
            if len(self.items) >= self.size:
                while len(self.items) > self.low_water and not self.stop.is_set():
                    self.cond.wait(0.1)
            self.items.append(item)
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.finished = True
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def get(self) -> Item | None:
        """The next item, or None once the producer has finished and everything was taken."""
        with self.cond:
            while not self.items and not self.finished:
                self.cond.wait()
            if not self.items:
                return None
            item = self.items.popleft()
            if len(self.items) == self.low_water:
                self.cond.notify_all()
            return item

"""Video files: every frame in order (nothing dropped), decoded ahead by a reader thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from tledge.preprocess import to_rgb8
from tledge.runtime.sources.base import Clock, Item, Source, stop_reader

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
        import queue

        buffer: queue.Queue = queue.Queue(self.queue_size)
        done = object()

        failed: list[BaseException] = []

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
                    if self.prepare is not None:
                        item.tensor = self.prepare(rgb)
                        item.ready = self.clock()
                        item.preprocess_ms = (item.ready - decoded) * 1000.0
                    while not self._stop.is_set():
                        try:
                            buffer.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    index += 1
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                failed.append(exc)
            finally:
                buffer.put(done)

        self._thread = threading.Thread(target=reader, name="tledge-video", daemon=True)
        self._thread.start()
        try:
            while True:
                item = buffer.get()
                if item is done:
                    if failed:  # e.g. `prepare` raised: the run fails as it would with the work in the loop
                        raise failed[0]
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
        stop_reader(self)

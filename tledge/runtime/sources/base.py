"""What every source shares: the Item it yields, the Source base class, and the stop/release steps of the
sources read by a thread from a cv2.VideoCapture (video files and live streams)."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

Clock = Callable[[], float]


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


DECODE_NICENESS = 10  # how much lower than inference decode threads run (Linux; 0 = same priority)


def lower_thread_priority(niceness: int | None = None) -> None:
    """Lower the calling thread's CPU priority (Linux keeps a nice value per thread): on a small CPU the
    inference threads then get the cores when they need them, and decoding ahead fills the gaps between
    (ONNX Runtime's threads sleep between parallel sections). When the prefetched items run out the
    inference threads wait, so decoding gets the cores anyway: it is never starved. Elsewhere, a no-op."""
    niceness = DECODE_NICENESS if niceness is None else niceness
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except (OSError, AttributeError):  # not permitted or not supported: decoding just shares the cores evenly
        pass


def stop_reader(source) -> None:
    """Stop a source's reader thread and release its cv2.VideoCapture (video files and live streams).

    A VideoCapture is not thread-safe: releasing it while the reader thread may still be inside grab()/read()
    (a thread slower than the join timeout to notice the stop) is a use-after-free risk in the decoder. So it
    is released here only once the thread has ended; a thread still running releases it itself."""
    source._stop.set()
    thread = source._thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=2.0)
        if thread.is_alive():
            return  # the reader's own exit path releases the capture (release_capture)
    release_capture(source)


def release_capture(source) -> None:
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

"""Play a video file as a camera would: frames appear at the file's own frame rate, the newest one wins.

Used by `--serve`: a viewer watching a recorded clip should see it at its real speed, and the model should
meet it the way it meets a camera (a slow model skips frames, counted as dropped) instead of racing through
the file. The capture thread and the newest-frame logic are `LiveSource`'s; this module only adds the clock.
"""

from __future__ import annotations

import time

import cv2

from tledge.runtime.sources import Clock, LiveSource, VideoFileSource

FALLBACK_FPS = 30.0  # some containers do not state a frame rate


class PacedCapture:
    """Wraps a cv2.VideoCapture: frame i is grabbed no earlier than `i / fps` seconds after the first. It offers
    `grab`/`retrieve` as well as `read`, so a live source can stamp the frame when it is due, not before the wait."""

    def __init__(self, capture, fps: float, sleep=time.sleep, monotonic=time.monotonic):
        self.capture = capture
        self.fps = fps if fps and fps > 0 else FALLBACK_FPS
        self.ended = False
        self._sleep, self._monotonic = sleep, monotonic
        self._start: float | None = None
        self._index = 0

    def grab(self) -> bool:
        """Wait until the next frame is due, then grab it: like a camera, the frame exists from here on."""
        now = self._monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._index / self.fps
        if due > now:
            self._sleep(due - now)
        if not self.capture.grab():
            self.ended = True
            return False
        self._index += 1
        return True

    def retrieve(self):
        return self.capture.retrieve()

    def read(self):
        if not self.grab():
            return False, None
        ok, frame = self.retrieve()
        return (True, frame) if ok and frame is not None else (False, None)

    def get(self, prop):
        return self.capture.get(prop)

    def release(self) -> None:
        self.capture.release()


class PacedVideoSource(LiveSource):
    """A video file behind a `PacedCapture`, read like a live camera. Its end is the end of the clip, not a
    lost camera: no retries, and no `stop_reason` (the summary says nothing went wrong)."""

    kind = "video"

    def __init__(self, spec: str, capture, clock: Clock = time.perf_counter):
        paced = PacedCapture(capture, float(capture.get(cv2.CAP_PROP_FPS) or 0.0))
        super().__init__(spec, paced, reopen=None, retries=0, retry_delay=0.0, clock=clock)
        self.fps = paced.fps

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @stop_reason.setter
    def stop_reason(self, reason: str | None) -> None:
        # LiveSource sets a "camera lost" reason when reads fail; at the end of the clip that is not news.
        capture = getattr(self, "capture", None)
        self._stop_reason = None if getattr(capture, "ended", False) else reason

    _stop_reason: str | None = None


def paced(source):
    """A `VideoFileSource` turned into a `PacedVideoSource` (same file, same capture); other sources as given."""
    if isinstance(source, VideoFileSource):
        return PacedVideoSource(source.spec, source.capture, clock=source.clock)
    return source

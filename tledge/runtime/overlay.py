"""Draw what the model sees: label, confidence, FPS and latency on the frame; show it in a window or save it.

`--show` needs a display and an OpenCV with GUI support: opencv-python-headless (tledge's default) has
none, so the error says to install opencv-python. `--save out.mp4` writes an annotated video (mp4v);
`--save DIR` writes annotated images into a folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from tledge.errors import TledgeError
from tledge.runtime.predict import Sink
from tledge.runtime.sources import VIDEO_EXTENSIONS, Item

WINDOW_TITLE = "tledge"
QUIT_KEYS = (ord("q"), 27)  # q or Esc


def draw_overlay(frame_rgb: np.ndarray, label: str, prob: float, fps: float | None = None,
                 latency_ms: float | None = None) -> np.ndarray:
    """A BGR copy of the frame with a dark band on top: 'label 97.1%' and 'FPS 31.2 | 12.3 ms'."""
    image = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    scale = max(0.35, min(1.0, width / 640.0))
    thickness = 1 if scale < 0.6 else 2
    lines = [f"{label} {prob * 100:.1f}%"]
    stats = []
    if fps:
        stats.append(f"FPS {fps:.1f}")
    if latency_ms is not None:
        stats.append(f"{latency_ms:.1f} ms")
    if stats:
        lines.append(" | ".join(stats))
    line_height = int(28 * scale) + 4
    band = min(height, line_height * len(lines) + 6)
    # A black band at 55% opacity behind the text: scale those rows only (blending the whole frame cost ~1 ms
    # per 640x480 frame, paid again by every live-view frame).
    image[: band + 1] = cv2.convertScaleAbs(image[: band + 1], alpha=0.45)
    for i, text in enumerate(lines):
        y = (i + 1) * line_height
        color = (80, 255, 80) if i == 0 else (255, 255, 255)
        cv2.putText(image, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, color, thickness, cv2.LINE_AA)
    return image


def check_display() -> None:
    """Raise a one-line TledgeError when a window cannot be opened here."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise TledgeError("--show needs a display (DISPLAY/WAYLAND_DISPLAY is not set); "
                          "use --save out.mp4 instead, or run from a desktop session / ssh -X")
    info = cv2.getBuildInformation()
    gui_line = next((line for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if "NONE" in gui_line.upper():
        raise TledgeError("--show needs OpenCV with GUI support, and this one is headless; "
                          "pip uninstall opencv-python-headless && pip install opencv-python")


class Window:
    def __init__(self, title: str = WINDOW_TITLE):
        check_display()
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise TledgeError(f"--show could not open a window ({str(exc).strip().splitlines()[-1][:160]}); "
                              "install opencv-python (not -headless) and check the display") from None

    def show(self, image_bgr: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q/Esc or closed the window."""
        cv2.imshow(self.title, image_bgr)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class VideoSaver:
    """Annotated frames → a video file (mp4v for .mp4/.mov/.m4v, MJPG otherwise), opened on the first frame."""

    def __init__(self, path: str | Path, fps: float = 30.0):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 30.0
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image_bgr: np.ndarray) -> None:
        height, width = image_bgr.shape[:2]
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            codec = "mp4v" if self.path.suffix.lower() in (".mp4", ".mov", ".m4v") else "MJPG"
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
            if not self.writer.isOpened():
                raise TledgeError(f"cannot write video {self.path} (codec {codec} unavailable?)")
            self.size = (width, height)
        if (width, height) != self.size:  # frames of a folder differ in size; a video needs one size
            image_bgr = cv2.resize(image_bgr, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image_bgr)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class ImageFolderSaver:
    """Annotated images → a folder, named after their source (frame number for streams)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, image_bgr: np.ndarray, source_id: str, index: int) -> None:
        stem = Path(source_id.split("#")[0]).stem or "frame"
        name = f"{index:06d}_{stem}.jpg"
        if not cv2.imwrite(str(self.folder / name), image_bgr):
            raise TledgeError(f"cannot write {self.folder / name}")
        self.frames += 1

    def close(self) -> None:
        pass


class OverlaySink(Sink):
    """Draws each prediction on its frame; shows it (`show`) and/or saves it (`save`: a video path or folder)."""

    def __init__(self, show: bool = False, save: str | Path | None = None, fps: float = 30.0):
        self.window = Window() if show else None
        self.saver = None
        if save is not None:
            save = Path(save)
            self.saver = VideoSaver(save, fps) if save.suffix.lower() in VIDEO_EXTENSIONS else ImageFolderSaver(save)
        self.closed_by_user = False

    def write(self, record: dict, item: Item, status: dict) -> None:
        if item.frame is None:
            return
        image = draw_overlay(item.frame, record["label"], record["prob"], status.get("fps"), status.get("latency_ms"))
        if isinstance(self.saver, VideoSaver):
            self.saver.write(image)
        elif self.saver is not None:
            self.saver.write(image, item.source_id, record["index"])
        if self.window is not None and not self.closed_by_user and not self.window.show(image):
            self.closed_by_user = True
            raise KeyboardInterrupt  # the predict loop stops cleanly and prints its summary

    def close(self) -> None:
        if self.saver is not None:
            self.saver.close()
        if self.window is not None:
            self.window.close()

"""Image files (a folder, a glob, one image): every file in order, decoded ahead in a thread pool."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tledge.preprocess import is_image_file, load_image
from tledge.runtime.sources.base import Clock, Item, Source, lower_thread_priority


class ImageFilesSource(Source):
    """Image files, in order. Decoding (and `prepare`, e.g. preprocessing) runs in a thread pool that
    keeps `prefetch` items in flight ahead of the consumer; cv2 releases the GIL while it works.
    `decode_min_size` (H, W): decode large JPEGs at reduced scale, never below that size (opt-in)."""

    kind = "images"
    refill_below = 0.5  # top the queue up only once it is half empty: decode in bursts, not between every call

    def __init__(self, spec: str, paths: Sequence[Path], workers: int = 2, prefetch: int = 32,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, clock: Clock = time.perf_counter,
                 decode_min_size: tuple[int, int] | None = None):
        super().__init__(spec, clock)
        self.paths = [Path(p) for p in paths]
        self.decode_min_size = decode_min_size
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
        frame = load_image(path, self.decode_min_size)
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
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tledge-decode",
                                        initializer=lower_thread_priority)
        pending: deque = deque()
        next_index = 0
        try:
            low_water = int(self.prefetch * self.refill_below)
            while pending or next_index < len(self.paths):
                if len(pending) <= low_water:
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


def find_images(root: Path) -> list[Path]:
    """Image files under a folder, recursive, sorted by path."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))


def find_other_files(root: Path) -> list[Path]:
    """Files under a folder that are not images (skipped, and counted in the summary); hidden ones left out."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not is_image_file(p) and not p.name.startswith("."))

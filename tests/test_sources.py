"""The video reader's burst queue: refills only once half empty, keeps order, ends, and lets a stop through."""

from __future__ import annotations

import os
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from tledge.runtime.sources.base import Item
from tledge.runtime.sources.video import BurstQueue


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def _item(i: int) -> Item:
    return Item(f"v#{i}", None, 0.0, index=i)


def test_producer_refills_only_once_half_empty_and_order_is_kept():
    stop = threading.Event()
    queue = BurstQueue(4, stop)

    def produce():
        for i in range(7):
            queue.put(_item(i))
        queue.finish()

    producer = threading.Thread(target=produce)
    producer.start()
    _wait_for(lambda: len(queue.items) == 4)
    assert queue.get().index == 0
    time.sleep(0.05)
    assert len(queue.items) == 3  # 3 of 4: not yet half empty, the producer still waits
    assert queue.get().index == 1
    _wait_for(lambda: len(queue.items) == 4)  # half empty: it refilled
    taken = [queue.get() for _ in range(6)]
    producer.join(5)
    assert [item.index for item in taken[:5]] == [2, 3, 4, 5, 6] and taken[5] is None
    assert queue.get() is None


def test_stop_releases_a_producer_waiting_for_room():
    stop = threading.Event()
    queue = BurstQueue(2, stop)
    queue.put(_item(0))
    queue.put(_item(1))
    producer = threading.Thread(target=queue.put, args=(_item(2),))
    producer.start()
    time.sleep(0.05)
    assert producer.is_alive()
    stop.set()
    queue.wake()
    producer.join(5)
    assert not producer.is_alive()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_decode_threads_run_below_the_inference_priority(tmp_path):
    from tledge.runtime.sources import base, open_source

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i * 40, np.uint8))
    seen = []

    def prepare(frame):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return frame

    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with open_source(str(tmp_path), prepare=prepare, workers=2, prefetch=4) as source:
        assert len(list(source)) == 3
    assert set(seen) == {min(19, main + base.DECODE_NICENESS)} and base.DECODE_NICENESS > 0
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main  # the caller's own is untouched

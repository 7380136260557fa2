"""Helpers for the live-view tests: a publisher that plays the predict loop's part, an MJPEG reader, a free port.

All traffic is on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np

from tledge.runtime.serve import BOUNDARY, LiveServer, LiveView, ServeOptions

LABELS = ("cat", "dog", "fish")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def frame_for(seq: int, size: int = 64) -> np.ndarray:
    """A frame that differs from the next one: a bright column that moves, on a background that shifts."""
    frame = np.full((size, size, 3), (seq * 7) % 200, np.uint8)
    frame[:, (seq * 3) % size] = 255
    return frame


def publish(view: LiveView, seq: int) -> None:
    label = LABELS[(seq // 10) % len(LABELS)]
    topk = [{"label": label, "index": LABELS.index(label), "prob": 0.9},
            {"label": "other", "index": 9, "prob": 0.1}]
    record = {"index": seq - 1, "source": f"fake#{seq}", "label": label, "prob": 0.9, "topk": topk,
              "latency_ms": 5.0 + seq % 3, "batch": 1}
    status = {"fps": 30.0, "latency_ms": 5.0, "dropped": 0,
              "stage_ms": {"capture_decode": 1.0, "preprocess": 0.5, "queue_wait": 0.2, "inference": 3.0,
                           "postprocess": 0.1, "service": 4.6, "end_to_end": 5.0 + seq % 3}}
    view.publish(frame_for(seq), record, status)


class Publisher:
    """Publishes numbered frames every `period` s until `stop()` or `limit` frames (bounded)."""

    def __init__(self, view: LiveView, period: float = 0.01, limit: int = 20000):
        self.view, self.period, self.limit = view, period, limit
        self.count = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set() and self.count < self.limit:
            self.count += 1
            publish(self.view, self.count)
            self._stop.wait(self.period)

    def stop(self) -> int:
        self._stop.set()
        self.thread.join(5)
        return self.count


def start_server(**options) -> tuple[LiveView, LiveServer]:
    view = LiveView(ServeOptions(host="127.0.0.1", port=0, **options), {"backend": "fake", "source": "test"})
    return view, LiveServer(view)


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def stats(port: int) -> dict:
    status, _, body = get(port, "/stats")
    assert status == 200
    return json.loads(body)


class MjpegReader:
    """Reads /stream.mjpg part by part over a plain socket: (frame number, JPEG bytes)."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        assert b" 200 " in status, status
        self.headers = {}
        for line in iter(self.file.readline, b"\r\n"):
            key, _, value = line.decode().partition(":")
            self.headers[key.strip().lower()] = value.strip()

    def next_frame(self) -> tuple[int, bytes]:
        line = self.file.readline()
        while line == b"\r\n":
            line = self.file.readline()
        assert line.strip() == f"--{BOUNDARY}".encode(), line
        headers = {}
        for line in iter(self.file.readline, b"\r\n"):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        data = self.file.read(int(headers["content-length"]))
        assert headers["content-type"] == "image/jpeg"
        return int(headers["x-frame"]), data

    def close(self):
        self.file.close()
        self.sock.close()


def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` s pass (bounded waits, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


"""Watch `tledge predict` live from a browser: `--serve [HOST:]PORT`.

Routes: `/` the page (one static file shipped in the package, no CDN), `/stream.mjpg` the annotated frames
as MJPEG (multipart/x-mixed-replace: browsers, VLC, ffmpeg and OpenCV open it), `/stats` the live numbers
as JSON.

The standard library's ThreadingHTTPServer holds the behaviour, so there is no extra dependency:
- the predict loop only hands its newest frame over (`LiveView.publish`: a few references under a lock);
  it never draws, encodes or writes for a viewer, so inference never waits for one;
- each viewer has its own thread that takes the newest frame when it is ready for one, so a slow viewer
  skips frames (its `dropped` count is in /stats) without slowing anyone else;
- a frame is drawn and JPEG-encoded at most once, by the first viewer that wants it, and the bytes are
  shared; with nobody watching nothing is encoded.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import json
import logging
import re
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from socketserver import TCPServer

import cv2
import numpy as np

from tledge.errors import TledgeError
from tledge.metrics import latency_stats
from tledge.runtime.overlay import draw_overlay
from tledge.runtime.predict import Sink
from tledge.runtime.sources import Item

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
BOUNDARY = "tledgeframe"
FPS_WINDOW_S = 2.0  # /stats fps: frames published in the last two seconds of the stream
LATENCY_STAGES = ("capture_decode", "preprocess", "queue_wait", "inference", "postprocess", "service", "end_to_end")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass
class ServeOptions:
    """How the live view is served. `max_fps` caps each viewer's stream (a browser needs no more), which
    also bounds the encoding work when the model runs faster than that."""

    host: str = DEFAULT_HOST
    port: int = 8080
    max_fps: float = 30.0
    jpeg_quality: int = 80
    window: int = 300  # recent frames behind the live p50/p99 figures


def parse_address(text: str | int) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); '0.0.0.0:8080'; '[::1]:8080'; 'jetson.local:8080'. Port 0 picks a free one."""
    text = str(text).strip()
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\]:(\d*)", text)
        if not match:
            raise TledgeError(f"--serve {text!r}: expected [IPv6]:PORT, e.g. [::1]:8080")
        host, port_text = match.groups()
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise TledgeError(f"--serve {text!r}: expected PORT or HOST:PORT with a port from 1 to 65535, e.g. 8080 "
                          "or 0.0.0.0:8080")
    if not _valid_host(host):
        raise TledgeError(f"--serve {text!r}: {host!r} is not an IP address or host name "
                          "(use 0.0.0.0 for every interface, 127.0.0.1 for this machine only)")
    return host, int(port_text)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", host):  # looks like IPv4 but is not one (e.g. 300.1.2.3): no DNS lookup for it
        return False
    return bool(HOSTNAME.match(host))


# ----------------------------------------------------------------------------------------------- live state
class Viewer:
    """One connected MJPEG client: frames sent, frames it skipped because it was slower than the model."""

    def __init__(self, ident: int, address: str):
        self.id = ident
        self.address = address
        self.sent = 0
        self.dropped = 0
        self.since = time.monotonic()

    def as_dict(self) -> dict:
        return {"id": self.id, "address": self.address, "sent": self.sent, "dropped": self.dropped,
                "connected_s": round(time.monotonic() - self.since, 3)}


class LiveView:
    """The newest frame and the live numbers, shared by the predict loop (one writer) and viewer threads."""

    def __init__(self, options: ServeOptions | None = None, info: dict | None = None):
        self.options = options or ServeOptions()
        self.info = dict(info or {})
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._seq = 0
        self._frame: np.ndarray | None = None
        self._record: dict | None = None
        self._status: dict = {}
        self._jpeg: tuple[int, bytes] | None = None
        self._times: deque = deque(maxlen=max(2, self.options.window))
        self._stages = {stage: deque(maxlen=self.options.window) for stage in LATENCY_STAGES}
        self._viewers: dict[int, Viewer] = {}
        self._ids = itertools.count(1)
        self._viewer_dropped_closed = 0
        self.encoded = 0
        self.running = True
        self.started = time.monotonic()

    # -- the predict loop's side: cheap, never blocks on a viewer
    def publish(self, frame_rgb: np.ndarray, record: dict, status: dict) -> None:
        stages = dict(status.get("stage_ms") or {})
        stages.setdefault("end_to_end", record.get("latency_ms"))
        with self._cond:
            self._seq += 1
            self._frame, self._record, self._status = frame_rgb, record, status
            self._times.append(time.monotonic())
            for stage, values in self._stages.items():
                if stages.get(stage) is not None:
                    values.append(float(stages[stage]))
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.running = False
            self._cond.notify_all()

    # -- the viewers' side
    def wait_for_frame(self, after: int, timeout: float) -> int | None:
        """The newest frame number above `after`, waiting up to `timeout` s; None if none came or stopped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.running and self._seq <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._seq if self.running and self._seq > after else None

    def jpeg(self) -> tuple[int, bytes] | None:
        """(frame number, JPEG bytes) of the newest frame with its overlay; encoded once, shared by all viewers."""
        with self._encode_lock:
            with self._cond:
                seq, frame, record, status = self._seq, self._frame, self._record, self._status
            if frame is None:
                return None
            if self._jpeg is None or self._jpeg[0] != seq:
                image = draw_overlay(frame, record["label"], record["prob"], status.get("fps"), status.get("latency_ms"))
                ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(self.options.jpeg_quality)])
                if not ok:
                    return None
                self._jpeg = (seq, buffer.tobytes())
                self.encoded += 1
            return self._jpeg

    def add_viewer(self, address: str) -> Viewer:
        with self._cond:
            viewer = Viewer(next(self._ids), address)
            self._viewers[viewer.id] = viewer
            return viewer

    def remove_viewer(self, viewer: Viewer) -> None:
        with self._cond:
            if self._viewers.pop(viewer.id, None) is not None:
                self._viewer_dropped_closed += viewer.dropped

    # -- /stats
    def stats(self) -> dict:
        with self._cond:
            times = list(self._times)
            stages = {stage: list(values) for stage, values in self._stages.items()}
            record, status, seq = self._record, self._status, self._seq
            viewers = [v.as_dict() for v in self._viewers.values()]
            dropped_by_viewers = self._viewer_dropped_closed + sum(v["dropped"] for v in viewers)
        recent = [t for t in times if t >= times[-1] - FPS_WINDOW_S] if times else []
        span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
        latency = {}
        for stage, values in stages.items():
            summary = latency_stats(values)
            latency[stage] = {"p50_ms": summary.get("p50_ms"), "p99_ms": summary.get("p99_ms"),
                              "count": summary["count"]}
        prediction = None
        if record is not None:
            prediction = {key: record[key] for key in ("index", "source", "label", "prob", "topk", "latency_ms")
                          if key in record}
        return {
            **self.info,
            "running": self.running,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "fps": (len(recent) - 1) / span if span > 0 else 0.0,
            "latency_ms": latency,
            "frames": {"seen": seq, "encoded": self.encoded, "source_dropped": int(status.get("dropped", 0) or 0),
                       "viewer_dropped": dropped_by_viewers},
            "prediction": prediction,
            "viewers": viewers,
            "max_stream_fps": self.options.max_fps,
        }


# ----------------------------------------------------------------------------------------------- HTTP
def page_html() -> bytes:
    """The page, shipped as package data (tledge/runtime/static/live.html)."""
    return resources.files("tledge.runtime").joinpath("static", "live.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    view: LiveView  # set on the per-server subclass
    server_version = "tledge"
    timeout = 30  # a client that stops reading for this long is let go (its thread ends)

    def log_message(self, format, *args):  # noqa: A002 - quiet: the predict summary is the log
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", page_html())
        elif path == "/stats":
            self._send(200, "application/json", json.dumps(self.view.stats()).encode())
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try / , /stream.mjpg or /stats\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        view = self.view
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        viewer = view.add_viewer(f"{self.client_address[0]}:{self.client_address[1]}")
        interval = 1.0 / view.options.max_fps if view.options.max_fps and view.options.max_fps > 0 else 0.0
        last = 0
        try:
            while view.running:
                if view.wait_for_frame(last, timeout=0.5) is None:
                    continue
                frame = view.jpeg()
                if frame is None:
                    continue
                seq, data = frame
                if last:
                    viewer.dropped += max(0, seq - last - 1)
                last = seq
                sent_at = time.monotonic()
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                                 f"X-Frame: {seq}\r\n\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                viewer.sent += 1
                pause = interval - (time.monotonic() - sent_at)
                if pause > 0:
                    time.sleep(pause)
        except (ConnectionError, TimeoutError, OSError):
            pass  # the viewer left (closed the tab, lost the network): nothing to report
        finally:
            view.remove_viewer(viewer)
            self.close_connection = True


class _LiveHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    out_of_files_pause = 0.2  # seconds to wait when accept() fails for want of file descriptors
    out_of_files_warned = False

    def get_request(self):
        """accept(); out of file descriptors (EMFILE/ENFILE: many idle viewers under a low `ulimit -n`), the
        listening socket stays readable and accept keeps failing, so wait a moment instead of spinning a core,
        and say so once. socketserver drops the failed request either way."""
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                if not self.out_of_files_warned:
                    self.out_of_files_warned = True
                    log.warning(f"serve: out of file descriptors ({len(self.connections)} connections open; "
                                "raise `ulimit -n`): new viewers wait")
                time.sleep(self.out_of_files_pause)
            raise

    def server_bind(self):
        # HTTPServer.server_bind asks DNS for the host's full name; a device offline would stall on it.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return  # a client that went away mid-request is normal
        log.warning(f"serve: request from {client_address[0]} failed: {type(error).__name__}: {error}")


class LiveServer:
    """The HTTP server for a LiveView, running in a background thread from construction until `close()`."""

    def __init__(self, view: LiveView):
        self.view = view
        host, port = view.options.host, int(view.options.port)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise TledgeError(f"--serve: cannot resolve host {host!r} ({exc.strerror}); give an IP address such as "
                              "0.0.0.0 or 127.0.0.1") from None
        handler = type("LiveHandler", (_Handler,), {"view": view})
        server_class = type("LiveHTTPServer", (_LiveHTTPServer,), {"address_family": infos[0][0]})
        try:
            self.server = server_class((host, port), handler)
        except OSError as exc:
            raise TledgeError(bind_error_message(host, port, exc)) from None
        self.server.connections = set()
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="tledge-serve", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def close(self) -> None:
        self.view.stop()
        self.server.shutdown()
        for connection in list(self.server.connections):  # wake viewer threads blocked on a slow socket
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server.server_close()
        self.thread.join(timeout=2.0)


def bind_error_message(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--serve {where}: port {port} is already in use (another tledge or web server?); pick another port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"--serve {where}: {host} is not an address of this machine; use 0.0.0.0 for every interface "
                "or 127.0.0.1 for this machine only")
    if exc.errno == errno.EACCES:
        return f"--serve {where}: permission denied (ports below 1024 need root); use a port such as 8080"
    return f"--serve {where}: cannot listen there ({exc.strerror or exc})"


# ----------------------------------------------------------------------------------------------- predict hook
class ServeSink(Sink):
    """The predict loop's end of the live view: starts the server, publishes every prediction, stops with the loop."""

    def __init__(self, options: ServeOptions, info: dict | None = None):
        self.view = LiveView(options, info)
        self.server = LiveServer(self.view)
        self._closed = False
        log.info(f"live view on {self.server.url} (stream {self.server.url}stream.mjpg, numbers {self.server.url}stats); "
                 "Ctrl-C stops")

    @property
    def url(self) -> str:
        return self.server.url

    def write(self, record: dict, item: Item, status: dict) -> None:
        if item.frame is not None:
            self.view.publish(item.frame, record, status)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.server.close()

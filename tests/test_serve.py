"""The live view (`tledge predict ... --serve`): address parsing, encode-once, MJPEG clients, /stats, errors,
paced video, the whole CLI run. HTTP only on 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from serve_helpers import (MjpegReader, Publisher, free_port, get, publish, start_server, stats,  # noqa: F401
                           wait_until)
from test_runtime_helpers import CLASSES, artifacts, run_cli  # noqa: F401
from tledge.errors import TledgeError
from tledge.runtime.pacing import PacedCapture, PacedVideoSource
from tledge.runtime.predict import PredictOptions, predict_stream
from tledge.runtime.serve import LiveView, ServeOptions, parse_address

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- address
@pytest.mark.parametrize("text, expected", [
    ("8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:8080", ("0.0.0.0", 8080)),
    ("[::1]:9000", ("::1", 9000)),
    ("jetson.local:80", ("jetson.local", 80)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text, says", [
    ("http", "expected PORT"), ("70000", "expected PORT"), ("0.0.0.0:", "expected PORT"),
    ("300.1.2.3:8080", "not an IP address"), ("bad_host!:8080", "not an IP address"), ("[::1:8080", "[IPv6]:PORT"),
])
def test_parse_address_rejects(text, says):
    with pytest.raises(TledgeError, match=says.replace("[", r"\[")):
        parse_address(text)


# ----------------------------------------------------------------------------- encode once, only when watched
def test_nothing_encoded_without_viewers_and_once_per_frame_with_them():
    view = LiveView(ServeOptions())
    for seq in range(1, 51):
        publish(view, seq)
    assert view.encoded == 0  # nobody watched: 50 frames, no JPEG
    first = view.jpeg()
    second = view.jpeg()  # a second viewer asking for the same frame shares the bytes
    assert first[0] == second[0] == 50 and first[1] is second[1] and view.encoded == 1
    decoded = cv2.imdecode(np.frombuffer(first[1], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (64, 64, 3)
    publish(view, 51)
    assert view.jpeg()[0] == 51 and view.encoded == 2


def test_publish_does_not_wait_for_an_encoding_viewer():
    view = LiveView(ServeOptions())
    publish(view, 1)
    view._encode_lock.acquire()  # a viewer is in the middle of encoding (as long as we hold this)
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (publish(view, 2), done.set()), daemon=True).start()
        assert done.wait(5.0)
    finally:
        view._encode_lock.release()
    assert view.stats()["frames"]["seen"] == 2


# ----------------------------------------------------------------------------- HTTP
def test_two_mjpeg_clients_at_once_get_the_same_newest_frames():
    view, server = start_server()
    publisher = Publisher(view, period=0.01)
    try:
        a, b = MjpegReader(server.port), MjpegReader(server.port)
        assert a.headers["content-type"] == "multipart/x-mixed-replace; boundary=tledgeframe"
        frames_a = [a.next_frame() for _ in range(8)]
        frames_b = [b.next_frame() for _ in range(8)]
        assert wait_until(lambda: len(stats(server.port)["viewers"]) == 2)
        for frames in (frames_a, frames_b):
            numbers = [n for n, _ in frames]
            assert numbers == sorted(set(numbers))  # newest-first, never repeated, never backwards
            for _, data in frames:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.shape == (64, 64, 3)
        # both were served from one encoding per frame number
        seen = {n for n, _ in frames_a} | {n for n, _ in frames_b}
        same = {n for n, _ in frames_a} & {n for n, _ in frames_b}
        by_number = dict(frames_a)
        assert all(dict(frames_b)[n] == by_number[n] for n in same)
        assert view.encoded <= publisher.count and len(seen) <= view.encoded
        a.close()
        b.close()
    finally:
        publisher.stop()
        server.close()


def test_client_disconnecting_mid_frame_stops_nothing(capfd):
    view, server = start_server()
    publisher = Publisher(view, period=0.005)
    try:
        quitter = MjpegReader(server.port)
        quitter.file.readline()
        quitter.file.read(20)  # inside the first part's headers
        quitter.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        quitter.close()  # RST: the server's next write fails
        assert wait_until(lambda: stats(server.port)["viewers"] == [])
        seen_before = stats(server.port)["frames"]["seen"]
        reader = MjpegReader(server.port)
        number, data = reader.next_frame()
        assert number >= seen_before and data[:2] == b"\xff\xd8"  # still serving, JPEG start marker
        assert wait_until(lambda: stats(server.port)["frames"]["seen"] > seen_before + 5)  # loop kept going
        reader.close()
    finally:
        publisher.stop()
        server.close()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and captured.err.strip() == ""


def test_slow_viewer_skips_frames_and_its_dropped_count_is_exact():
    view, server = start_server(max_fps=10.0)  # the stream takes a frame every 100 ms; frames come every 5 ms
    publisher = Publisher(view, period=0.005)
    reader = MjpegReader(server.port)
    try:
        numbers = [reader.next_frame()[0] for _ in range(4)]
        last = publisher.stop()
        while numbers[-1] != last:  # the newest frame always reaches the viewer in the end
            numbers.append(reader.next_frame()[0])
        gaps = sum(b - a - 1 for a, b in zip(numbers, numbers[1:]))
        assert gaps > 0
        assert wait_until(lambda: stats(server.port)["viewers"][0]["sent"] == len(numbers))
        data = stats(server.port)
        assert data["viewers"][0]["dropped"] == gaps and data["frames"]["viewer_dropped"] == gaps
        assert data["frames"]["seen"] == last
    finally:
        reader.close()
        server.close()


def test_stats_schema_and_page():
    view, server = start_server()
    try:
        empty = stats(server.port)
        assert empty["prediction"] is None and empty["frames"]["seen"] == 0 and empty["fps"] == 0.0
        for seq in range(1, 21):
            publish(view, seq)
        data = stats(server.port)
        assert set(data) >= {"backend", "source", "running", "uptime_s", "fps", "latency_ms", "frames", "prediction",
                             "viewers", "max_stream_fps"}
        assert data["running"] is True and data["backend"] == "fake" and data["viewers"] == []
        assert data["frames"] == {"seen": 20, "encoded": 0, "source_dropped": 0, "viewer_dropped": 0}
        assert list(data["latency_ms"]) == ["capture_decode", "preprocess", "queue_wait", "inference", "postprocess",
                                            "service", "end_to_end"]
        assert data["latency_ms"]["inference"] == {"p50_ms": 3.0, "p99_ms": 3.0, "count": 20}
        assert data["latency_ms"]["end_to_end"]["p50_ms"] == 6.0  # 5 + seq % 3 over 20 frames: median 6
        assert data["prediction"]["label"] == "fish" and data["prediction"]["index"] == 19
        assert [t["label"] for t in data["prediction"]["topk"]] == ["fish", "other"]
        assert isinstance(data["fps"], float) and data["fps"] > 0
        status, headers, body = get(server.port, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'src="/stream.mjpg"' in body and b"/stats" in body
        assert b"http://" not in body and b"https://" not in body  # nothing from the internet: no CDN
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.close()
    assert view.running is False


# ----------------------------------------------------------------------------- CLI: errors are one line
def _one_line_error(capsys, artifacts, serve) -> str:
    code, _, err = run_cli(capsys, "predict", artifacts["onnx"], artifacts["paths"][0], "--serve", serve)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_port_in_use_is_one_line(artifacts, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert "already in use" in _one_line_error(capsys, artifacts, f"127.0.0.1:{port}")


@pytest.mark.parametrize("serve, says", [("300.1.2.3:8080", "not an IP address or host name"),
                                         ("192.0.2.1:0", "not an address of this machine"),
                                         ("99999", "expected PORT")])
def test_bad_host_or_port_is_one_line(artifacts, capsys, serve, says):
    assert says in _one_line_error(capsys, artifacts, serve)


# ----------------------------------------------------------------------------- paced video
def test_paced_capture_waits_for_each_frame_time():
    class Clip:
        def __init__(self):
            self.left = 3

        def grab(self):
            self.left -= 1
            return self.left >= 0

        def retrieve(self):
            return True, np.zeros((4, 4, 3), np.uint8)

    now = [10.0]
    sleeps = []
    capture = PacedCapture(Clip(), fps=25.0, sleep=lambda s: (sleeps.append(round(s, 6)), now.__setitem__(0, now[0] + s)),
                           monotonic=lambda: now[0])
    assert [capture.read()[0] for _ in range(4)] == [True, True, True, False]
    assert sleeps == [0.04, 0.04, 0.04] and capture.ended  # frame i at i/25 s; the 4th read finds the end


def write_video(path: Path, frames: int, fps: float = 30.0, size: int = 64) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    for i in range(frames):
        frame = np.zeros((size, size, 3), np.uint8)
        frame[:, (2 * i) % size] = 255
        writer.write(frame)
    writer.release()
    return path


class _QuickBackend:
    name = "fake"
    max_batch = None

    def __init__(self, card):
        self.card = card

    def predict(self, batch):
        logits = np.zeros((batch.shape[0], len(CLASSES)), np.float32)
        logits[:, 2] = 3.0
        return logits

    def synchronize(self):
        pass


def test_paced_video_ends_cleanly_at_its_frame_rate(artifacts, tmp_path):
    video = write_video(tmp_path / "clip.avi", 12, fps=60.0)
    source = PacedVideoSource(str(video), cv2.VideoCapture(str(video)))
    assert source.fps == 60.0 and source.kind == "video" and source.live
    summary = predict_stream(_QuickBackend(artifacts["card"]), source, PredictOptions(warmup=0))
    assert summary["items"] + summary["dropped_frames"] == 12
    assert summary["stop_reason"] is None  # the end of a clip is not a lost camera
    assert summary["wall_s"] >= 11 / 60.0  # 12 frames at 60 fps cannot take less than 11 frame periods


# ----------------------------------------------------------------------------- the whole command
def test_cli_serves_a_video_while_predicting(artifacts, tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", 90, fps=30.0)  # 3 s of "camera"
    port = free_port()
    summary_path = tmp_path / "summary.json"
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=run_cli(capsys, "predict", artifacts["onnx"], video,
                                                                        "--serve", f"127.0.0.1:{port}",
                                                                        "--summary-json", summary_path)), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: _stats_or_none(port) is not None, timeout=20)
        reader = MjpegReader(port)
        numbers = [reader.next_frame()[0] for _ in range(3)]
        live = stats(port)
        reader.close()
    finally:
        thread.join(30)
    code, out, err = result["code"]
    assert code == 0, err
    assert numbers == sorted(numbers) and live["prediction"]["label"] in CLASSES
    assert live["backend"].startswith("onnxruntime") and live["classes"] == CLASSES
    assert all(live["latency_ms"][stage]["count"] > 0 for stage in live["latency_ms"])  # every stage is fed
    assert f"live view on http://127.0.0.1:{port}/" in out and "items" in out
    summary = json.loads(summary_path.read_text())
    assert summary["items"] + summary["dropped_frames"] == 90 and summary["source_kind"] == "video"
    assert summary["wall_s"] >= 89 / 30.0  # played at the clip's frame rate, not as fast as possible
    with pytest.raises(OSError):  # the server stopped with the source
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _stats_or_none(port):
    try:
        return stats(port)
    except OSError:
        return None


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background (CI runners, `cmd &`) inherits an
    ignored SIGINT, and a Python started with SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_summary_and_exits_130(artifacts, tmp_path):
    video = write_video(tmp_path / "long.avi", 900, fps=30.0)  # 30 s: Ctrl-C comes long before the end
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "tledge", "predict", str(artifacts["onnx"]), str(video),
                                "--serve", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        assert wait_until(lambda: (_stats_or_none(port) or {}).get("frames", {}).get("seen", 0) > 3, timeout=60)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)  # generous: a loaded CI box is slow to unwind threads
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.startswith("interrupted") and len(err.strip().splitlines()) == 1
    assert "items" in out and "end to end" in out and f"http://127.0.0.1:{port}/" in out


def test_opencv_opens_the_mjpeg_stream():
    view, server = start_server()
    publisher = Publisher(view, period=0.01)
    capture = None
    try:
        assert wait_until(lambda: view.stats()["frames"]["seen"] > 0)
        capture = cv2.VideoCapture(f"http://127.0.0.1:{server.port}/stream.mjpg", cv2.CAP_FFMPEG)
        assert capture.isOpened()
        frames = [capture.read() for _ in range(5)]
        assert all(ok for ok, _ in frames) and frames[0][1].shape == (64, 64, 3)
        assert any(not np.array_equal(frames[0][1], f) for _, f in frames[1:])  # live: frames change
    finally:
        if capture is not None:
            capture.release()
        publisher.stop()
        server.close()


def test_network_camera_is_predicted_and_served_again(artifacts, tmp_path, capsys):
    """A camera-like live source over the network (another server's MJPEG on 127.0.0.1), served by --serve."""
    view, upstream = start_server()
    publisher = Publisher(view, period=0.02)
    port, summary_path, result = free_port(), tmp_path / "summary.json", {}
    args = ("predict", artifacts["onnx"], f"http://127.0.0.1:{upstream.port}/stream.mjpg", "--serve",
            f"127.0.0.1:{port}", "--max-frames", "90", "--summary-json", summary_path)
    thread = threading.Thread(target=lambda: result.update(code=run_cli(capsys, *args)), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: (_stats_or_none(port) or {}).get("frames", {}).get("seen", 0) > 0, timeout=30)
        reader = MjpegReader(port)
        numbers = [reader.next_frame()[0] for _ in range(3)]
        reader.close()
        thread.join(60)
    finally:
        publisher.stop()
        upstream.close()
    code, out, err = result["code"]
    assert code == 0, err
    assert numbers == sorted(set(numbers))
    summary = json.loads(summary_path.read_text())
    assert summary["source_kind"] == "live" and summary["items"] == 90


def test_overlay_darkens_only_its_band():
    from tledge.runtime.overlay import draw_overlay

    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    drawn = draw_overlay(frame, "sea", 0.5)  # at 160 px wide, one text line: a band of rows 0..19
    bgr = frame[:, :, ::-1].astype(np.int16)
    assert np.array_equal(drawn[20:], bgr[20:])  # the picture below the band is untouched
    for row in (0, 19):  # rows without glyphs: 45% of the original (a black band at 55% opacity)
        assert np.abs(drawn[row].astype(np.int16) - np.round(bgr[row] * 0.45)).max() <= 1


SYSTEM_PYTHON = "/usr/bin/python3"


def _rtsp_server_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


@pytest.mark.skipif(not _rtsp_server_available(),
                    reason="no GStreamer RTSP server here (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                           "gstreamer1.0-plugins-base gstreamer1.0-plugins-good)")
def test_rtsp_camera_is_predicted_and_served(artifacts, tmp_path, capsys):
    rtsp_port, port, summary_path, result = free_port(), free_port(), tmp_path / "summary.json", {}
    camera = subprocess.Popen([SYSTEM_PYTHON, str(Path(__file__).with_name("rtsp_server.py")), str(rtsp_port), "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert camera.stdout.readline().strip() == "rtsp ready"
        args = ("predict", artifacts["onnx"], f"rtsp://127.0.0.1:{rtsp_port}/live", "--serve", f"127.0.0.1:{port}",
                "--max-frames", "50", "--summary-json", summary_path)
        thread = threading.Thread(target=lambda: result.update(code=run_cli(capsys, *args)), daemon=True)
        thread.start()
        assert wait_until(lambda: (_stats_or_none(port) or {}).get("frames", {}).get("seen", 0) > 0, timeout=40)
        reader = MjpegReader(port)
        number, data = reader.next_frame()
        reader.close()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        thread.join(60)
    finally:
        camera.kill()
        camera.communicate()
    code, out, err = result["code"]
    assert code == 0, err
    assert number >= 1 and image.shape == (480, 640, 3)
    summary = json.loads(summary_path.read_text())
    assert summary["source_kind"] == "live" and summary["items"] == 50

"""A test RTSP camera on 127.0.0.1 (GStreamer's RTSP server through PyGObject, run with the system python3).

    /usr/bin/python3 tests/rtsp_server.py PORT SECONDS

Serves rtsp://127.0.0.1:PORT/live (a moving test pattern, 640x480 at 25 fps, MJPEG over RTP), prints
"rtsp ready", and exits by itself after SECONDS. Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-base and -good; test_serve.py skips its RTSP test where they are missing.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=25/1,format=I420 "
            "! jpegenc ! rtpjpegpay name=pay0 pt=96 )")


def main() -> None:
    port, seconds = sys.argv[1], int(sys.argv[2])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    server.attach(None)
    loop = GLib.MainLoop()
    GLib.timeout_add_seconds(seconds, loop.quit)
    print("rtsp ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()

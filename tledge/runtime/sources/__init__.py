"""Where frames come from: camera, Jetson CSI camera, video file, RTSP/HTTP stream, image, folder, glob.

`open_source(spec)` returns a Source; iterating it yields `Item`s (source id, uint8 RGB frame or None with
an error, capture timestamp). Two kinds of behaviour:

- live sources (camera index, /dev/videoN, csi://N, rtsp/http URL): a capture thread keeps only the
  newest frame, so a slow model never builds up a backlog (latency stays bounded) and every frame that was
  replaced before the model took it is counted in `dropped`. A camera that stops delivering is retried a few
  times (reopened), then the source ends cleanly and says why in `stop_reason`.
- recorded sources (video file, image files): every item, in order, nothing dropped. Image files are decoded
  (and, if the predict loop asks, preprocessed) ahead of time in a small thread pool, video frames by one
  reader thread, so decoding the next batch overlaps inference on the current one; both refill in bursts
  and run at a lower CPU priority than inference (base.lower_thread_priority). Unreadable images come out
  as items with `frame=None` and an error: the caller skips, counts and names them.

Modules: `base` (Item, Source), `images` (image files), `video` (video files), `live` (cameras and
streams), `opening` (`open_source`). cv2 and numpy only (no torch).
"""

from tledge.runtime.sources.base import Clock, Item, Source
from tledge.runtime.sources.images import ImageFilesSource, find_images, find_other_files
from tledge.runtime.sources.live import CSI_PIPELINE, LiveSource, csi_pipeline
from tledge.runtime.sources.opening import GLOB_CHARS, URL_SCHEMES, open_source
from tledge.runtime.sources.video import VIDEO_EXTENSIONS, VideoFileSource

__all__ = [
    "CSI_PIPELINE", "Clock", "GLOB_CHARS", "ImageFilesSource", "Item", "LiveSource", "Source", "URL_SCHEMES",
    "VIDEO_EXTENSIONS", "VideoFileSource", "csi_pipeline", "find_images", "find_other_files", "open_source",
]

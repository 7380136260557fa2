"""The options of `tledge predict` and `tledge bench`, each defined once with help and range (see
tledge.options); the CLI options, the Python API and docs/reference.md's tables come from these fields. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from tledge.devices import DEVICE_HELP, THREADS_HELP, parse_device
from tledge.errors import TledgeError
from tledge.options import option, validate
from tledge.runtime.backends import KINDS, artifact_types

PROVIDERS = tuple(provider for kind in KINDS for provider in kind.providers)  # tensorrt, cuda, cpu, openvino
CACHE_HELP = "ONNX Runtime's TensorRT provider engine cache folder (default: MODEL.onnx.trt-cache next to the model)."
FP16_HELP = "Let ONNX Runtime's TensorRT provider use FP16 kernels (.onnx files)."


def parse_batches(value: Any) -> tuple[int, ...]:
    """'1,16' or [1, 16] → (1, 16)."""
    items = str(value).replace(" ", "").split(",") if isinstance(value, (str, int)) else list(value)
    try:
        batches = tuple(int(v) for v in items if str(v) != "")
    except (TypeError, ValueError):
        raise TledgeError(f"--batch {value!r}: expected comma-separated integers, e.g. 1,16") from None
    if not batches or min(batches) < 1:
        raise TledgeError(f"--batch {value!r}: batch sizes must be positive")
    return batches


@dataclass
class PredictRequest:
    """Everything `tledge predict ARTIFACT SOURCE` takes."""

    artifact: str = option(help=artifact_types().capitalize() + ".", argument=True)
    source: str = option(help="Camera, video, image, folder, glob or URL.", argument=True)
    topk: int = option(5, "How many classes to report per item.", min=1)
    batch: int = option(1, "Items per inference call (files and video).", min=1)
    device: str = option("auto", DEVICE_HELP, parse=parse_device)
    provider: str | None = option(None, "ONNX Runtime provider to force: tensorrt, cuda or cpu; openvino runs the "
                                        ".onnx with OpenVINO instead.", choices=PROVIDERS)
    cache: str | None = option(None, CACHE_HELP)
    fp16: bool = option(False, FP16_HELP)
    threads: int | None = option(None, THREADS_HELP, min=1)
    workers: int = option(2, "Decode threads for image files.", min=1)
    fast_decode: bool = option(False, "Decode JPEGs at least twice the model input at 1/2, 1/4 or 1/8 scale (DCT "
                                      "scaling): faster on camera-sized photos; pixels differ slightly from "
                                      "training's full decode.")
    show: bool = option(False, "Open a window with label, confidence, FPS and latency (q/Esc quits).")
    save: str | None = option(None, "Write annotated output: a video (.mp4/.avi) or a folder of images.")
    json: str | None = option(None, "Write one JSON line per item.")
    csv: str | None = option(None, "Write a CSV (files and folders).")
    summary_json: str | None = option(None, "Write the latency summary as JSON.")
    max_frames: int | None = option(None, "Stop after this many items.", min=1)
    warmup: int = option(3, "Untimed warm-up batches before the run.", min=0)
    serve: str | None = option(None, "Serve a live view (page, MJPEG stream, /stats JSON) on PORT; host 127.0.0.1 "
                                     "unless given.", metavar="[HOST:]PORT")

    def __post_init__(self) -> None:
        self.artifact, self.source = str(self.artifact), str(self.source)
        self.device = parse_device(self.device)
        validate(self)
        if self.serve is not None:  # a bad address is found before the model loads
            from tledge.runtime.serve import parse_address

            parse_address(self.serve)


@dataclass
class BenchOptions:
    """Everything `tledge bench` takes besides the artifacts."""

    batches: Sequence[int] = option((1, 16), "Batch sizes, comma-separated.", flag="--batch", parse=parse_batches)
    iters: int = option(50, "Timed calls per row (at least).", min=1)
    warmup: int = option(10, "Untimed calls per row first.", min=0)
    threads: int | None = option(None, THREADS_HELP, min=1)
    min_time: float = option(0.0, "Time each row at least this many seconds.", min=0)
    device: str = option("auto", DEVICE_HELP, parse=parse_device)
    cache: str | None = option(None, CACHE_HELP)
    fp16: bool = option(False, FP16_HELP)
    eval_batch: int = option(32, "Batch size of the accuracy pass.", min=1, cli=False)
    data: str | None = option(None, "Labelled folder (class subfolders) for accuracy; default: the run's test split, "
                                    "else the parity pack exported beside the artifacts.")
    out: str | None = option(None, "Where bench.json and bench.png go (default: RUN/bench, or ./bench for a list of "
                                   "files).")

    def __post_init__(self) -> None:
        self.batches = parse_batches(self.batches)
        self.device = parse_device(self.device)
        validate(self)


@dataclass
class InfoOptions:
    """Everything `tledge info ARTIFACT` takes."""

    artifact: str = option(help=artifact_types().capitalize() + ".", argument=True)
    json: bool = option(False, "Print the card as JSON.")

    def __post_init__(self) -> None:
        self.artifact = str(self.artifact)
        validate(self)

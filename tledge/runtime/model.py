"""`tledge.load(artifact)`: a loaded model with `.predict(...)` and `.stream(...)` for Python callers.

It runs the same backend, the same preprocessing (`tledge.preprocess.preprocess_rgb`) and the same top-k
as `tledge predict`, so the CLI and the API give the same answers for the same input. No torch import here
(an .onnx or .engine model runs without it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from tledge.errors import TledgeError
from tledge.metrics import softmax
from tledge.preprocess import load_image, preprocess_rgb
from tledge.options import default_of
from tledge.runtime.options import PredictRequest
from tledge.runtime.predict import preprocessor, topk_records

ImageInput = Union[str, Path, np.ndarray, "PIL.Image.Image"]  # noqa: F821 - PIL is optional


@dataclass
class Prediction:
    """One classified image or frame: the top label, its probability and the top-k [(label, prob), ...]."""

    label: str
    score: float
    topk: list[tuple[str, float]]
    source: str | None = None  # file path or stream spec, when known
    index: int = 0  # position in the input (or frame number of a stream)
    latency_ms: float | None = None  # stream(): from the frame's arrival to its answer


@dataclass
class Model:
    """A loaded artifact (run folder, .pt, .onnx, .engine or .xml). Close it, or use it in a `with` block; made
    by `load`, whose topk and batch defaults are predict's (PredictRequest)."""

    path: Path
    backend: object
    topk: int
    batch: int
    skipped: list[str] = field(default_factory=list)  # unreadable files of the last predict(), with reasons
    closed: bool = False

    @property
    def card(self):
        """The model card: class names, input size, mean/std, precision..."""
        return self.backend.card

    @property
    def class_names(self) -> list[str]:
        return list(self.backend.card.class_names)

    def predict(self, images: ImageInput | Sequence[ImageInput]) -> list[Prediction]:
        """Classify an image path, an HxWx3 uint8 RGB array, a PIL image, a folder (recursive), or a list of
        these.

        Unreadable files inside a folder are skipped and listed in `self.skipped`; an unreadable file named
        directly, and anything that is not an image (None, bytes, an empty array), is a TledgeError."""
        self._check_open()
        self.skipped = []
        items = list(self._expand(images))
        predictions: list[Prediction] = []
        for start in range(0, len(items), self._batch_size()):
            chunk = items[start:start + self._batch_size()]
            tensors = np.stack([tensor for _, tensor in chunk])
            for (name, _), probs in zip(chunk, self._probabilities(tensors)):
                predictions.append(self._prediction(probs, name, len(predictions)))
        return predictions

    def stream(self, source: str | int, *, max_frames: int | None = None) -> Iterator[Prediction]:
        """Predictions for a camera (0, /dev/video0, csi://0), video file, rtsp/http URL, folder or glob, one
        at a time, each with its latency from the frame's arrival (or the file's read) to the answer."""
        from tledge.runtime.sources import open_source

        self._check_open()
        if isinstance(source, bool) or not isinstance(source, (str, int, os.PathLike)):
            raise TledgeError(f"stream() takes a camera index, a video, folder or glob path, or a URL; got "
                              f"{_kind(source)} (use predict() for images and arrays)")
        clock = time.perf_counter
        self.skipped = []
        with open_source(source, prepare=preprocessor(self.card), clock=clock) as frames:
            for count, item in enumerate(frames):
                if max_frames is not None and count >= max_frames:
                    break
                if item.frame is None and item.tensor is None:
                    self.skipped.append(f"{item.source_id}: {item.error}")
                    continue
                tensor = item.tensor if item.tensor is not None else preprocess_rgb(item.frame, self.card)
                probs = self._probabilities(tensor[None])[0]
                prediction = self._prediction(probs, item.source_id, item.index)
                prediction.latency_ms = (clock() - item.timestamp) * 1000.0
                yield prediction

    def close(self) -> None:
        if not self.closed:
            self.backend.close()
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise TledgeError(f"this model ({self.path.name}) was closed; open it again with "
                              f"tledge.load({str(self.path)!r})")

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ helpers
    def _batch_size(self) -> int:
        limit = getattr(self.backend, "max_batch", None)
        return max(1, min(self.batch, limit) if limit else self.batch)

    def _probabilities(self, tensors: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(self.backend.predict(np.ascontiguousarray(tensors))))

    def _prediction(self, probs: np.ndarray, source: str | None, index: int) -> Prediction:
        top = topk_records(probs[None], self.class_names, self.topk)[0]
        return Prediction(top[0]["label"], top[0]["prob"], [(r["label"], r["prob"]) for r in top], source, index)

    def _expand(self, images) -> Iterator[tuple[str | None, np.ndarray]]:
        """(name, preprocessed CHW tensor) for every input; folders expand to their image files."""
        if isinstance(images, (str, os.PathLike, np.ndarray)) or _is_pil(images):
            images = [images]
        if images is None or isinstance(images, (bytes, bytearray)) or not hasattr(images, "__iter__"):
            raise TledgeError(f"predict() takes an image path, an HxWx3 uint8 RGB array, a PIL image, a folder or a "
                              f"list of these; got {_kind(images)}")
        for position, image in enumerate(images):
            if _is_pil(image):
                image = _pil_rgb(image)
            if isinstance(image, np.ndarray):
                yield None, preprocess_rgb(_check_array(image), self.card)
                continue
            if not isinstance(image, (str, os.PathLike)):
                raise TledgeError(f"predict(): item {position} is {_kind(image)}; each item must be an image path, "
                                  "an HxWx3 uint8 RGB array or a PIL image")
            path = Path(image)
            if path.is_dir():
                from tledge.image_files import find_images

                files = find_images(path)
                if not files:
                    raise TledgeError(f"no image files in {path}")
                for file in files:
                    rgb = load_image(file)
                    if rgb is None:
                        self.skipped.append(f"{file}: unreadable image")
                        continue
                    yield str(file), preprocess_rgb(rgb, self.card)
            elif path.is_file():
                rgb = load_image(path)
                if rgb is None:
                    raise TledgeError(f"{path}: not a readable image")
                yield str(path), preprocess_rgb(rgb, self.card)
            else:
                raise TledgeError(f"no such image or folder: {path}")


def _check_array(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise TledgeError(f"an image array must be HxWx3 uint8 RGB with at least one pixel; got shape {image.shape}, "
                          f"dtype {image.dtype}")
    return image


def _is_pil(value) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert")


def _pil_rgb(image) -> np.ndarray:
    """A PIL image (any mode: L, RGBA, P, I;16...) as HxWx3 uint8 RGB, as training decodes files."""
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise TledgeError(f"this PIL image cannot be converted to RGB ({exc})") from None


def _kind(value) -> str:
    """How to name a wrong input in a message: None, bytes, an int..."""
    if value is None:
        return "None"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes (decode them first, e.g. with PIL.Image.open(io.BytesIO(data)))"
    return f"a {type(value).__name__}"


def load(artifact: str | Path, *, device: str = default_of(PredictRequest, "device"),
         topk: int = default_of(PredictRequest, "topk"), batch: int = default_of(PredictRequest, "batch"),
         **backend_options) -> Model:
    """Open a run folder (its best.pt), a .pt, an .onnx or an .engine for prediction."""
    from tledge.runtime.backends import load_backend

    for name, value in (("topk", topk), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TledgeError(f"{name} {value!r}: must be a whole number, at least 1")
    path = artifact_path(artifact, "load()")
    backend = load_backend(path, device, **backend_options)
    from tledge.provenance.verdicts import UnverifiedEnvironment, unverified_here

    unverified = unverified_here(path, backend.name)
    if unverified:
        import warnings

        warnings.warn(unverified, UnverifiedEnvironment, stacklevel=2)
    return Model(path, backend, topk=topk, batch=batch)


def artifact_path(value, what: str) -> Path:
    """A path argument of the API (str or PathLike, not empty) as a Path; anything else is a TledgeError."""
    if isinstance(value, (str, os.PathLike)) and str(os.fspath(value)).strip():
        return Path(os.fspath(value))
    from tledge.runtime.backends import artifact_types

    raise TledgeError(f"{what} needs a path to {artifact_types()}; got "
                      f"{_kind(value) if not isinstance(value, str) else 'an empty string'}")

"""The Backend contract: `card`, `name`, `predict(float32 NCHW) -> logits [N, C]`, `close()`.

Subclasses implement `_predict`; the base class checks the input against the card (shape, dtype), so an
artifact fed the wrong size fails with a clear message instead of returning garbage, and checks the first
answer (one score per class of the card, all finite), so a graph that disagrees with its card or gives NaN
is one line naming the file, not "buildings nan%".
"""

from __future__ import annotations

import os

import numpy as np

from tledge.card import ModelCard
from tledge.errors import TledgeError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_threads(threads: int | None, flag: str = "--threads") -> tuple[int | None, str | None]:
    """`threads` bounded by the usable cores, and the warning to print when it was lowered (more threads
    than cores only contend: 10,000 of them starve the machine)."""
    cores = usable_cores()
    if threads is None or threads <= cores:
        return threads, None
    return cores, f"warning: {flag} {threads} is more than the {cores} core(s) this process may use; using {cores}"


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_batch_fits(batch: int, input_size, flag: str = "--batch") -> None:
    """A batch whose float32 input alone would take more than half the available memory is a TledgeError
    before anything is allocated (10^5 images of 224 px are 60 GB), instead of a swap storm or the OOM killer."""
    height, width = input_size
    needed = int(batch) * 3 * int(height) * int(width) * 4
    available = available_memory()
    if available is not None and needed > available // 2:
        raise TledgeError(f"{flag} {batch}: its input alone needs {needed / 1e9:.1f} GB ({batch} x 3 x {height} x "
                          f"{width} float32) and {available / 1e9:.1f} GB of memory is available; use a smaller {flag}")


class Backend:
    name: str = "backend"
    card: ModelCard
    max_batch: int | None = None  # None: any batch size
    provider: str | None = None  # what actually runs the model: cpu, cuda, tensorrt
    notes: tuple = ()  # one-line messages for the caller to print (fallbacks, choices made for the user)
    last_gpu_ms: float | None = None  # GPU compute time of the last call (CUDA events), where the backend has it

    _answered = False  # set once the first output passed _check_output

    @classmethod
    def read_card(cls, path) -> ModelCard:  # pragma: no cover - abstract
        """The artifact's model card without building the model (tledge info, verify, eval)."""
        raise NotImplementedError

    @classmethod
    def format_label(cls, path) -> str:  # pragma: no cover - abstract
        """What bench's format column calls this file (onnx-int8, tensorrt-fp16, pytorch)."""
        raise NotImplementedError

    @classmethod
    def artifact_bytes(cls, path) -> int:
        """The artifact's size on disk (an OpenVINO IR counts its .bin too; a run folder its best.pt)."""
        from pathlib import Path

        path = Path(path)
        path = path / "best.pt" if path.is_dir() else path
        return path.stat().st_size if path.is_file() else 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, C] for a normalized float32 NCHW batch, or for the card's own uint8 input (a model with
        its normalization in the graph); a softmax-output model's probabilities come back as their log, so
        every caller's softmax/argmax stays right."""
        batch = self._check_input(batch)
        logits = np.asarray(self._predict(batch), dtype=np.float32)
        if not self._answered:
            self._check_output(logits, len(batch))
            self._answered = True
        if self.card.output_kind == "probs":
            logits = np.log(np.maximum(logits, np.finfo(np.float32).tiny))
        return logits

    def _check_output(self, logits: np.ndarray, rows: int) -> None:
        where = getattr(self, "path", None) or self.name
        classes = self.card.num_classes
        if logits.shape != (rows, classes):
            raise TledgeError(f"{where}: the model answers with shape {tuple(logits.shape)} for {rows} image(s) but "
                              f"its card names {classes} classes (expected [{rows}, {classes}]); re-export it")
        if not np.isfinite(logits).all():
            bad = int((~np.isfinite(logits)).sum())
            raise TledgeError(f"{where}: the model gives {bad} non-finite score(s) (NaN or inf) on its first call; "
                              "its weights are damaged or it was trained on NaN losses; retrain or re-export it")

    def _predict(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (GPU backends); timing code calls it before reading the clock."""

    def close(self) -> None:
        """Free sessions, contexts and device buffers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_input(self, batch: np.ndarray) -> np.ndarray:
        from tledge.preprocess import model_input, to_model_input

        batch = np.asarray(batch)
        height, width = self.card.input_size
        shape, dtype = model_input(self.card)
        if dtype == np.uint8 and batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[1:] == shape:
            if self.max_batch is not None and batch.shape[0] > self.max_batch:
                raise TledgeError(f"{self.name}: batch {batch.shape[0]} exceeds this artifact's maximum {self.max_batch}")
            return np.ascontiguousarray(batch)  # already the model's own input: no normalization
        if batch.ndim != 4 or batch.shape[1:] != (3, height, width):
            raise TledgeError(
                f"{self.name}: input shape {tuple(batch.shape)} does not match the model card's [N, 3, {height}, {width}]"
            )
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise TledgeError(f"{self.name}: batch {batch.shape[0]} exceeds this artifact's maximum {self.max_batch}")
        return to_model_input(np.ascontiguousarray(batch, dtype=np.float32), self.card)


def predict_any_batch(backend, batch: np.ndarray) -> np.ndarray:
    """Feed a batch of any size to a backend whose graph may have a fixed or bounded batch."""
    limit = backend.max_batch
    if limit is None or len(batch) == limit:
        return backend.predict(batch)
    fixed = getattr(backend, "min_batch", None) is None  # ONNX with a fixed N: exactly N per call
    outputs = []
    for start in range(0, len(batch), limit):
        chunk = batch[start:start + limit]
        if fixed and len(chunk) < limit:
            padded = np.zeros((limit, *chunk.shape[1:]), dtype=chunk.dtype)
            padded[: len(chunk)] = chunk
            outputs.append(backend.predict(padded)[: len(chunk)])
        else:
            outputs.append(backend.predict(chunk))
    return np.concatenate(outputs)

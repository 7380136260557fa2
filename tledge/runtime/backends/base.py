"""The Backend contract: `card`, `name`, `predict(float32 NCHW) -> logits [N, C]`, `close()`.

Subclasses implement `_predict`; the base class checks the input against the card (shape, dtype), so an
artifact fed the wrong size fails with a clear message instead of returning garbage.
"""

from __future__ import annotations

import numpy as np

from tledge.card import ModelCard
from tledge.errors import TledgeError


class Backend:
    name: str = "backend"
    card: ModelCard
    max_batch: int | None = None  # None: any batch size
    provider: str | None = None  # what actually runs the model: cpu, cuda, tensorrt
    notes: tuple = ()  # one-line messages for the caller to print (fallbacks, choices made for the user)
    last_gpu_ms: float | None = None  # GPU compute time of the last call (CUDA events), where the backend has it

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, C] for a normalized float32 NCHW batch, or for the card's own uint8 input (a model with
        its normalization in the graph); a softmax-output model's probabilities come back as their log, so
        every caller's softmax/argmax stays right."""
        batch = self._check_input(batch)
        logits = np.asarray(self._predict(batch), dtype=np.float32)
        if self.card.output_kind == "probs":
            logits = np.log(np.maximum(logits, np.finfo(np.float32).tiny))
        return logits

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

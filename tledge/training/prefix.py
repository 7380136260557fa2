"""The frozen front of a network, run once per image and cached, so training epochs only run the rest.

`--freeze all` freezes the whole trunk (its output is the pooled feature vector); `--freeze stages:K`
freezes the first K stages (its output is a feature map). Either way that front is a fixed function in
eval mode, so its output per image can be computed once and every later epoch trains only the back part
(`TrainableSuffix`) on the stored outputs. The parameters are the model's own, so the checkpoint, card,
export and runtime of a cached run are those of any other run.

On the CPU the front runs in ONNX Runtime (the same network is several times faster there than in PyTorch
eager). That engine is checked against PyTorch on the first batch and dropped, with a log line, if the two
differ by more than `MAX_REL_DIFF` of the output scale; the tests hold it to the same bound.
"""

from __future__ import annotations

import logging
import io
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from tledge.models.device import DeviceSetup
from tledge.training.freeze import parse_policy

log = logging.getLogger(__name__)

MAX_REL_DIFF = 1e-4  # |ORT - torch| / max|torch| on the first batch
CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class FrozenPrefix(nn.Module):
    """The first `stages` stages of a TledgeNet (all of them plus pool and pre_logits when `stages` is None)."""

    def __init__(self, model, stages: int | None):
        super().__init__()
        self.model, self.stages = model, stages
        # Frozen means eval: the ONNX exporter restores the wrapper's own mode afterwards, and a wrapper
        # left in training mode would switch the model's BatchNorm layers to batch statistics.
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stages is None:
            return self.model.forward_features(x)
        return self.model.features[: self.stages](x)


class TrainableSuffix(nn.Module):
    """The rest of the network after a cached prefix: what a training step runs on cached outputs."""

    def __init__(self, model, stages: int | None):
        super().__init__()
        self.model, self.stages = model, stages

    def forward(self, cached: torch.Tensor) -> torch.Tensor:
        x = cached.float()
        if self.stages is None:
            return self.model.head(x)
        x = self.model.features[self.stages:](x)
        return self.model.head(self.model.pre_logits(self.model.pool(x)))


def cached_prefix_stages(freeze: str, num_stages: int) -> int | None:
    """Stages whose output is cached for this freeze policy: None for the whole trunk ('all'), K for
    'stages:K' with 0 < K < num_stages (K == num_stages caches the unpooled map; 'all' is better then)."""
    kind, count = parse_policy(freeze)
    if kind == "all":
        return None
    if kind == "stages" and 0 < count <= num_stages:
        return count
    raise ValueError(f"freeze policy {freeze!r} has no frozen prefix to cache")


def has_cacheable_prefix(freeze: str) -> bool:
    kind, count = parse_policy(freeze)
    return kind == "all" or (kind == "stages" and count > 0)


@dataclass
class PrefixEngine:
    """Runs the frozen prefix on one batch: `run(float32 NCHW tensor) -> tensor`; `name` says which engine."""

    name: str
    run: Callable[[torch.Tensor], torch.Tensor]


def _torch_engine(prefix: FrozenPrefix, setup: DeviceSetup) -> PrefixEngine:
    @torch.inference_mode()
    def run(inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(setup.device, non_blocking=setup.pin_memory)
        if setup.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with setup.autocast():
            return prefix(inputs).float().cpu()

    return PrefixEngine("pytorch", run)


def onnxruntime_engine(prefix: FrozenPrefix, example: torch.Tensor, threads: int | None = None) -> PrefixEngine:
    """The prefix exported in memory (TorchScript exporter, dynamic batch) and run by ONNX Runtime's CPU
    provider with all of torch's threads."""
    import onnxruntime as ort

    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(prefix, (example[:1],), buffer, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          do_constant_folding=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(inputs: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(inputs.numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {"input": array})[0])

    return PrefixEngine("onnxruntime-cpu", run)


def relative_difference(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference, other = reference.detach().float(), other.detach().float()
    scale = float(reference.abs().max()) or 1.0
    return float((reference - other).abs().max()) / scale


def choose_engine(prefix: FrozenPrefix, first_batch: torch.Tensor, setup: DeviceSetup) -> PrefixEngine:
    """ONNX Runtime on the CPU when it matches PyTorch on `first_batch`; PyTorch otherwise (and on CUDA)."""
    reference = _torch_engine(prefix, setup)
    if setup.is_cuda:
        return reference
    try:
        fast = onnxruntime_engine(prefix, first_batch)
        diff = relative_difference(reference.run(first_batch), fast.run(first_batch))
    except Exception as exc:  # noqa: BLE001 - any exporter/runtime failure just means the slower engine
        log.info(f"prefix cache: ONNX Runtime unavailable for this network ({str(exc).splitlines()[0][:120]}); "
                 "using PyTorch")
        return reference
    if diff > MAX_REL_DIFF:
        log.info(f"prefix cache: ONNX Runtime differs from PyTorch by {diff:.1e} of the output scale; using PyTorch")
        return reference
    return fast


def cache_prefix(model, stages: int | None, loader, setup: DeviceSetup, views: int = 1, dtype: str = "float32",
                 engine: PrefixEngine | None = None, progress=None):
    """(outputs, labels) of the frozen prefix for every item of `loader`, in loader order.

    views=2 adds each image's horizontal mirror as a second view: outputs then have shape
    [N, 2, ...] and `ViewSampler` picks one view per image and epoch. Returns (TensorDataset, engine name,
    seconds).
    """
    from torch.utils.data import TensorDataset

    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, not {views}")
    prefix = FrozenPrefix(model, stages)
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    outputs, labels = [], []
    try:
        for step, (inputs, targets) in enumerate(loader, 1):
            if engine is None:
                engine = choose_engine(prefix, inputs, setup)
            batch = [engine.run(inputs)]
            if views == 2:
                batch.append(engine.run(torch.flip(inputs, dims=[3])))
            out = torch.stack(batch, 1) if views == 2 else batch[0]
            outputs.append(out.to(CACHE_DTYPES[dtype]))
            labels.append(targets)
            if progress is not None:
                progress(step)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - started
    if not outputs:
        raise ValueError("no images to cache")
    return TensorDataset(torch.cat(outputs), torch.cat(labels)), (engine.name if engine else "none"), seconds


class ViewSampler(torch.utils.data.Dataset):
    """One of the cached views of each image, chosen per (seed, epoch) so runs and resumes repeat."""

    def __init__(self, cached, seed: int, epoch: int):
        self.cached = cached
        outputs = cached.tensors[0]
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        self.choice = torch.randint(0, outputs.shape[1], (outputs.shape[0],), generator=generator)

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, index: int):
        output, label = self.cached[index]
        return output[int(self.choice[index])], label

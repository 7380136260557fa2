"""The checks an export ends with: every artifact against the PyTorch FP32 model on labelled images
(parity.json), and the batch-1 latency of both INT8 flavours against FP32, timed interleaved."""

from __future__ import annotations

import logging
from pathlib import Path

from tledge.atomic import write_json
from tledge.exporting.result import ArtifactRow, ExportResult

log = logging.getLogger(__name__)

PARITY_FILE = "parity.json"


def parity_data(ctx):
    """The run's test split, --parity-data, or none (with a warning)."""
    from tledge.verification.parity import ParityData

    if not ctx.options.parity:
        return None
    if ctx.parity_set is not None:
        return ctx.parity_set
    if ctx.splits is not None and ctx.splits.items.get("test"):
        return ParityData(ctx.splits.paths("test"), ctx.splits.labels("test"), f"test split of {ctx.run_dir}")
    log.warning(f"no parity check: {ctx.ckpt} has no test split next to it; pass --parity-data DIR to check")
    return None


def check_parity(result: ExportResult, rows: list[ArtifactRow], model, card, data, tolerances,
                 pack_images: int = 0) -> None:
    import numpy as np
    import torch

    from tledge.verification.parity import run_parity
    from tledge.stats import combine
    from tledge.provenance.environment import describe

    # channels_last: oneDNN's faster CPU convolutions (MobileNetV2 224 px: 32 → 20 ms/image measured), the
    # same FP32 arithmetic up to summation order (~1e-6 of the logit scale; the ONNX gate is 1e-4).
    model = model.to(memory_format=torch.channels_last)

    def reference(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return model(x).float().numpy()

    artifacts = [(row.format, row.path, row.kind) for row in rows]
    log.info(f"parity: {len(data.paths)} images from {data.source}, PyTorch FP32 vs {', '.join(a[0] for a in artifacts)}")
    results, info = run_parity(reference, artifacts, data, card, tolerances)
    info["skipped"] = list(getattr(data, "skipped", [])) + list(info["skipped"])  # found by the folder reader too
    log.debug("  ran on: " + ", ".join(f"{p.name} {p.backend}" for p in results)
              + " (FP32 ONNX on FP32 arithmetic: CPU, or CUDA with TF32 off)")
    for row, parity in zip(rows, results):
        row.parity = parity
    environments = [describe(p.backend) for p in results]  # once: a GPU provider's facts ask the driver
    _write_verification(result, rows, results, environments, info, card, reference, tolerances, pack_images)
    result.outcome = combine([p.outcome for p in results])
    result.parity_source = data.source
    if info["skipped"]:
        log.warning(f"parity skipped {len(info['skipped'])} unreadable image(s): {', '.join(info['skipped'][:5])}")
    report = {"source": info["source"], "images": info["images"], "skipped": info["skipped"],
              "tolerances": tolerances, "outcome": result.outcome, "passed": result.passed,
              "intervals": "95%: Wilson (agreement), Tango paired score (accuracy difference); see tledge/stats.py",
              "results": [{**p.to_dict(), "seconds": round(r.seconds, 3), "size_mb": round(r.size_mb, 3),
                           "environment": env} for r, p, env in zip(rows, results, environments)],
              "failed": [{"format": r.format, "status": r.status} for r in result.rows if not r.ok]}
    result.parity_path = result.out_dir / PARITY_FILE
    write_json(result.parity_path, report)


def _write_verification(result: ExportResult, rows, results, environments, info, card, reference, tolerances,
                        pack_images: int) -> None:
    """The parity pack (what `tledge verify` re-checks with on another device) and each artifact's first verdict,
    with the environment it was obtained in (tledge.verification)."""
    from tledge.provenance import pack, verdicts

    for row, parity, env in zip(rows, results, environments):
        verdicts.record(row.path, verdicts.make_verdict(parity, "export", env, tolerances=tolerances), fresh=True)
    if pack_images <= 0:
        return
    folder = pack.write_pack(result.out_dir, info["paths"], info["labels"], info["reference_logits"],
                             info["input_sha"], card, info["source"], tolerances, cap=pack_images, reference=reference)
    manifest = pack.read_manifest(folder)  # just written: its checksums need no second pass
    log.info(f"  parity pack: {folder} ({manifest['sampling']['images']} of {manifest['sampling']['of']} images, "
             f"{pack.pack_size_mb(folder):.1f} MB); on another device: tledge verify {rows[0].path}")


def _interleaved_latency_ms(paths: dict, card, rounds: int = 5, runs: int = 10) -> dict[str, float]:
    """Batch-1 latency of several ONNX files timed in alternating rounds (so a noisy minute hits them all);
    per file the median over every call. Single back-to-back timings on a shared host are noise."""
    import numpy as np

    from tledge.runtime.backends import load_backend
    from tledge.timing import medians, time_calls

    backends = {name: load_backend(path, device="cpu") for name, path in paths.items()}
    try:
        height, width = card.input_size
        inputs = {name: np.random.default_rng(0).standard_normal(
            (b.max_batch or 1, 3, height, width)).astype(np.float32) for name, b in backends.items()}
        calls = {name: (lambda b=backend, x=inputs[name]: b.predict(x)) for name, backend in backends.items()}
        return medians(time_calls(calls, rounds=rounds, runs=runs, warmup=3))
    finally:
        for backend in backends.values():
            backend.close()


def compare_flavours(onnx_path: Path, rows: dict, card) -> None:
    """Batch-1 latency of FP32 and both INT8 flavours on this CPU (interleaved rounds), recorded in each INT8 card."""
    from tledge.exporting.int8 import record_latency

    latencies = _interleaved_latency_ms({"fp32": onnx_path, **{f: row.path for f, row in rows.items()}}, card)
    compared = {k: round(v, 3) for k, v in latencies.items()}
    for flavour, row in rows.items():
        record_latency(row.path, {"latency_ms_batch1": compared[flavour], "latency_compared_ms_batch1": compared})
    log.info("  int8 latency, batch 1, this CPU, interleaved: " + ", ".join(f"{k} {v:.2f} ms" for k, v in compared.items()))
    if latencies["s8s8"] < latencies["u8s8"]:
        log.info("  note: symmetric s8s8 is faster than u8s8 on this CPU; model.int8.trt.onnx also runs in ONNX Runtime")

"""`tledge predict` as a library call: open the artifact and the source, wire the outputs, run the loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tledge.errors import Interrupted, TledgeError
from tledge.preprocess import decode_min_size
from tledge.runtime.backends import artifact_kind, load_backend
from tledge.runtime.options import PredictRequest
from tledge.runtime.predict import PredictOptions, format_summary, predict_stream, preprocessor
from tledge.runtime.sources import Clock, open_source


def backend_options(artifact: str | Path, provider: str | None, threads: int | None, cache: str | None = None,
                    fp16: bool = False, batch: int | None = None) -> dict:
    """Only the options the artifact's backend understands; a forced provider on a non-ONNX artifact is an error."""
    kind = artifact_kind(artifact)
    for given, flag in ((provider, "--provider"), (cache, "--cache"), (fp16, "--fp16")):
        if given and kind != "onnxruntime" and not (kind == "openvino" and flag == "--fp16"):  # [issue 23 wiring]
            raise TledgeError(f"{flag} applies to .onnx artifacts only ({Path(artifact).name} runs on {kind})")
    options: dict = {}
    if kind == "openvino":  # [issue 23 wiring]
        options.update(threads=threads, fp16=fp16)
    elif kind == "onnxruntime":
        # No busy-waiting ORT threads in the predict loop: decode threads share the cores with inference, and
        # measured end-to-end folder throughput is higher without spinning (benchmarks/pipeline_bench.py).
        options.update(provider=provider, threads=threads, spin=False, cache_dir=cache, fp16=fp16, batch=batch)
    elif kind == "torch" and threads:
        options["threads"] = threads
    return options


def _serve_address(text: str | None):
    if text is None:
        return None
    from tledge.runtime.serve import parse_address

    return parse_address(text)


def _serve_sink(address: tuple[str, int], backend, source, echo):
    from tledge.runtime.serve import ServeOptions, ServeSink

    info = {"backend": backend.name, "source": str(source.spec), "classes": list(backend.card.class_names)}
    return ServeSink(ServeOptions(host=address[0], port=address[1]), info, echo=echo)


def check_predict_outputs(request: PredictRequest) -> None:
    """Every output path is checked before the model loads (a one-line error, not a traceback at the end)."""
    from tledge.paths import check_output_dir, check_output_file, check_outputs_apart
    from tledge.runtime.sources import VIDEO_EXTENSIONS

    for path, option in ((request.json, "--json"), (request.csv, "--csv"), (request.summary_json, "--summary-json")):
        if path:
            check_output_file(path, option)
    if request.save:
        if Path(request.save).suffix.lower() in VIDEO_EXTENSIONS:
            check_output_file(request.save, "--save")
        else:
            check_output_dir(request.save, "--save")
    check_outputs_apart(
        [("--json", request.json), ("--csv", request.csv), ("--summary-json", request.summary_json),
         ("--save", request.save)],
        [("the model", _model_file(request.artifact)), ("the source", request.source)])


def _model_file(artifact: str) -> Path:
    """The file a run folder artifact loads (its best.pt); a file artifact is itself."""
    from tledge.checkpoint import BEST

    path = Path(artifact)
    return path / BEST if path.is_dir() else path


def open_predict_source(request: PredictRequest, card, clock: Clock = time.perf_counter):
    """The source as `tledge predict` opens it: the card's preprocessing done ahead by the decode threads, two
    batches (at least 32 items) decoded ahead, large JPEGs decoded at reduced scale with --fast-decode."""
    return open_source(request.source, prepare=preprocessor(card), workers=request.workers,
                       prefetch=max(32, 2 * request.batch), clock=clock,
                       decode_min_size=decode_min_size(card) if request.fast_decode else None)


def run_predict(request: PredictRequest, echo: Callable[[str], None] = print, clock: Clock = time.perf_counter) -> dict:
    from tledge.runtime.outputs import CsvSink, JsonlSink, ProgressSink, TableSink, write_summary_json

    check_predict_outputs(request)
    serve_address = _serve_address(request.serve)
    backend = load_backend(request.artifact, request.device,
                           **backend_options(request.artifact, request.provider, request.threads, request.cache,
                                             request.fp16, request.batch))
    for note in getattr(backend, "notes", ()):  # provider fallbacks, the CPU INT8 flavour kept on the CPU
        echo(note)
    from tledge.staleness import stale_reason

    stale = stale_reason(request.artifact, backend.card)
    if stale:
        echo(f"warning: {stale}")
    from tledge.verification.verdicts import unverified_here

    unverified = unverified_here(request.artifact, backend.name)
    if unverified:
        echo(f"warning: {unverified}")
    sinks = []
    try:
        source = open_predict_source(request, backend.card, clock)
        if serve_address is not None:  # a served video plays at its own frame rate, as a camera would
            from tledge.runtime.pacing import paced

            source = paced(source)
        with source:
            if request.csv and source.kind != "images":
                raise TledgeError("--csv is for image files and folders; use --json for video and camera sources")
            table = TableSink() if source.kind == "images" else None
            if request.json:
                sinks.append(JsonlSink(request.json))
            if request.csv:
                sinks.append(CsvSink(request.csv, min(request.topk, backend.card.num_classes)))
            if request.show or request.save:
                from tledge.runtime.overlay import OverlaySink

                sinks.append(OverlaySink(request.show, request.save, fps=source.fps or 30.0))
            if serve_address is not None:
                sinks.append(_serve_sink(serve_address, backend, source, echo))
            if table is not None:
                sinks.append(table)
                sinks.append(ProgressSink(len(source)))
            options = PredictOptions(request.topk, request.batch, request.warmup, request.max_frames)
            summary = predict_stream(backend, source, options, sinks, clock=clock)
    finally:
        for sink in sinks:  # already closed by the loop on success; closing twice is harmless
            sink.close()
        backend.close()
    summary["artifact"] = str(request.artifact)
    if table is not None and table.total:
        echo(table.render())
    echo(format_summary(summary))
    if request.summary_json:
        write_summary_json(summary, request.summary_json)
    if summary.get("interrupted"):
        raise Interrupted(f"stopped after {summary['items']} item(s); the summary above covers what ran")
    if summary["items"] == 0 and summary["skipped"]:
        first = summary["skipped_items"][0]
        raise TledgeError(f"none of the {summary['skipped']} input(s) of {request.source} could be read "
                          f"(e.g. {first['source']}: {first['error']}); check the files")
    return summary

"""`tledge predict`, `tledge bench`, `tledge info`: option parsing only; the work is in the library.

Nothing here imports torch: the .onnx and .engine paths must run on a machine without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from tledge.errors import TledgeError


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise TledgeError(f"--batch {text!r}: expected comma-separated integers, e.g. 1,16") from None
    if not values or min(values) < 1:
        raise TledgeError(f"--batch {text!r}: batch sizes must be positive")
    return values


device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                             help="Where to run (.engine files always use the GPU).")
threads_option = click.option("--threads", type=int, default=None, help="CPU threads for ONNX Runtime / PyTorch.")


@click.command()
@click.argument("artifact", type=click.Path(path_type=str))
@click.argument("source", type=str)
@click.option("--topk", type=int, default=5, show_default=True, help="How many classes to report per item.")
@click.option("--batch", type=int, default=1, show_default=True, help="Items per inference call (files and video).")
@device_option
@click.option("--provider", default=None, help="ONNX Runtime provider to force: tensorrt, cuda or cpu.")
@threads_option
@click.option("--workers", type=int, default=2, show_default=True, help="Decode threads for image files.")
@click.option("--show", is_flag=True, help="Open a window with label, confidence, FPS and latency (q/Esc quits).")
@click.option("--save", type=click.Path(path_type=str), default=None,
              help="Write annotated output: a video (.mp4/.avi) or a folder of images.")
@click.option("--json", "json_path", type=click.Path(path_type=str), default=None, help="Write one JSON line per item.")
@click.option("--csv", "csv_path", type=click.Path(path_type=str), default=None, help="Write a CSV (files and folders).")
@click.option("--summary-json", type=click.Path(path_type=str), default=None, help="Write the latency summary as JSON.")
@click.option("--max-frames", type=int, default=None, help="Stop after this many items.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed warm-up batches before the run.")
def predict(artifact, source, topk, batch, device, provider, threads, workers, show, save, json_path, csv_path,
            summary_json, max_frames, warmup):
    """Classify SOURCE with ARTIFACT (run folder, .pt, .onnx, .engine).

    SOURCE: camera index (0) or /dev/videoN, csi://N (Jetson CSI camera), a video file, an rtsp/http URL,
    an image, a folder (recursive) or a quoted glob ("photos/**/*.jpg").
    """
    from tledge.runtime.runner import PredictRequest, run_predict

    request = PredictRequest(artifact, source, topk, batch, device, provider, threads, workers, show, save, json_path,
                             csv_path, summary_json, max_frames, warmup)
    run_predict(request, echo=click.echo)


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--data", type=click.Path(path_type=str), default=None,
              help="Labelled folder (class subfolders) for accuracy; default: the run's test split.")
@click.option("--batch", "batch_text", default="1,16", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--iters", type=int, default=50, show_default=True, help="Timed calls per row (at least).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed calls per row first.")
@threads_option
@click.option("--min-time", type=float, default=0.0, show_default=True, help="Time each row at least this many seconds.")
@device_option
@click.option("--out", type=click.Path(path_type=str), default=None,
              help="Where bench.json and bench.png go (default: RUN/bench, or ./bench for a list of files).")
def bench(sources, data, batch_text, iters, warmup, threads, min_time, device, out):
    """Benchmark a run folder (best.pt + every export/*.onnx, *.engine) or a list of artifact files."""
    from tledge.runtime.bench import BenchOptions, bench as run_bench, format_bench_table, write_bench

    from tledge.runtime.bench import bench_out_dir, check_rows

    options = BenchOptions(_batches(batch_text), iters, warmup, threads, min_time, device)
    out = bench_out_dir(sources, out)
    result = run_bench(list(sources), data, options, log=lambda m: click.echo(m, err=True))
    click.echo(format_bench_table(result))
    json_path, png = write_bench(result, out)
    click.echo(f"wrote {json_path}" + (f" and {png}" if png else " (no plot: matplotlib is not installed)"))
    check_rows(result)


@click.command()
@click.argument("artifact", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def info(artifact, as_json):
    """Print the model card of a run folder, .pt, .onnx or .engine."""
    from tledge.runtime.info import format_card, read_card

    card = read_card(artifact)
    click.echo(json.dumps(card.to_dict(), indent=2, sort_keys=True) if as_json else format_card(card, artifact))


COMMANDS = [predict, bench, info]

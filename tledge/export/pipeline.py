"""`tledge export`: checkpoint → the requested artifacts → parity check → table, parity.json, next commands.

Everything the user got wrong is found before any work starts (unknown format, an option no requested
format uses, no GPU for trt-*, too few calibration images, no calibration source), so a mistake costs a
second, not a half-finished export. Every format is timed and sized the same way (`_timed`). The FP32 ONNX
is always written: every other format is built from it.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tledge.atomic import atomic_write_bytes
from tledge.errors import ParityError, TledgeError
from tledge.export.formats import FORMATS, INT8_TRT_FILENAME, artifact_path, check_options, parse_formats
from tledge.splits import SPLITS_FILE, Splits
from tledge.table import format_table

DEFAULT_FORMATS = ("onnx", "int8")
INT8_FLAVOUR_CHOICES = ("cpu", "both")
PARITY_FILE = "parity.json"


@dataclass
class ArtifactRow:
    format: str  # row name: a format name, or "int8-trt" for the symmetric TensorRT input
    path: Path
    kind: str  # fp32 | fp16 | int8 (what the parity gate judges it as)
    seconds: float
    size_mb: float
    parity: object | None = None  # ParityResult

    @property
    def status(self) -> str:
        if self.parity is None:
            return "ok (no parity)"
        return "ok" if self.parity.passed else "FAILED parity"

    def table_row(self) -> dict:
        p = self.parity
        return {"format": self.format, "file": self.path.name, "size MB": round(self.size_mb, 2),
                "time s": round(self.seconds, 2),
                "agreement %": None if p is None else round(p.agreement, 2),
                "acc %": None if p is None else round(p.acc_artifact, 2),
                "Δacc pt": None if p is None else f"{p.acc_delta:+.2f}",
                "max rel Δlogit": None if p is None else float(f"{p.max_rel_diff:.2e}"),
                "status": self.status}


@dataclass
class ExportResult:
    out_dir: Path
    rows: list[ArtifactRow] = field(default_factory=list)
    parity_path: Path | None = None
    passed: bool = True
    next_commands: list[str] = field(default_factory=list)

    def table(self) -> str:
        return format_table([r.table_row() for r in self.rows])

    def path(self, name: str) -> Path:
        return next(r.path for r in self.rows if r.format == name)


def default_formats() -> list[str]:
    from tledge.export.tensorrt_build import tensorrt_available

    return list(DEFAULT_FORMATS) + (["trt-fp16"] if tensorrt_available() else [])


def export_run(source: str | Path, formats: str | Sequence[str] | None = None, out_dir: str | Path | None = None, *,
               opset: int | None = None, exporter: str | None = None, batch: int | None = None,
               max_batch: int | None = None, workspace: int | None = None, calib_data: str | Path | None = None,
               calib_images: int | None = None, calib_method: str | None = None, calib_percentile: float | None = None,
               int8_flavours: str | None = None, nodes_to_exclude: Sequence[str] | None = None,
               parity_data: str | Path | None = None, tolerance: str | None = None, parity: bool = True,
               int8_budget: float | None = None, int8_methods: str | None = None, int8_recipe: str | Path | None = None,
               int8_report: str | Path | None = None, int8_max_groups: int | None = None,
               qat_epochs: int | None = None, qat_lr: float | None = None,
               echo: Callable[[str], None] = print) -> ExportResult:
    """Export a run folder (or a best.pt) to `formats`, check parity, write parity.json; see module doc.

    Raises TledgeError (exit 2) for user mistakes and ParityError (exit 3) when an artifact is outside
    tolerance (after everything, parity.json included, is written).
    """
    from tledge.checkpoint import load_model, resolve_checkpoint
    from tledge.export import int8 as int8_mod
    from tledge.export.parity import ParityData, labelled_folder, parse_tolerance

    fmts = parse_formats(formats if formats is not None else default_formats())
    names = {f.name for f in fmts}
    check_options(fmts, {"exporter": exporter, "batch": batch, "max_batch": max_batch, "workspace": workspace,
                         "calib_data": calib_data, "calib_images": calib_images, "calib_method": calib_method,
                         "calib_percentile": calib_percentile, "int8_flavours": int8_flavours,
                         "nodes_to_exclude": nodes_to_exclude or None, "int8_budget": int8_budget,
                         "int8_methods": int8_methods, "int8_recipe": int8_recipe, "int8_report": int8_report,
                         "int8_max_groups": int8_max_groups, "qat_epochs": qat_epochs, "qat_lr": qat_lr})
    _check_int8_options(int8_budget, int8_methods, int8_recipe, nodes_to_exclude, calib_method, calib_percentile,
                        qat_epochs, qat_lr)
    if int8_flavours is not None and int8_flavours not in INT8_FLAVOUR_CHOICES:
        raise TledgeError(f"--int8-flavours must be one of {', '.join(INT8_FLAVOUR_CHOICES)}")
    method = calib_method or "minmax"
    if method not in int8_mod.CALIB_METHODS:
        raise TledgeError(f"unknown calibration method {method!r}; choose from {', '.join(int8_mod.CALIB_METHODS)}")
    tolerances = parse_tolerance(tolerance)
    opset = 17 if opset is None else int(opset)
    from tledge.export.onnx_export import choose_exporter

    exporter = choose_exporter(opset, exporter)
    trt_formats = [f for f in fmts if f.needs_gpu]
    profile = None
    if trt_formats:
        from tledge.export.tensorrt_build import import_tensorrt, make_profile, require_gpu

        profile = make_profile(batch, max_batch)
        import_tensorrt()
        require_gpu()

    # Source: a run folder (best.pt + splits.json) or a bare checkpoint. Output paths are checked first.
    from tledge.paths import check_output_dir, check_output_file, clean_stale_temp_files
    from tledge.staleness import file_sha256

    source = Path(source)
    ckpt = resolve_checkpoint(source)
    run_dir = source if source.is_dir() else (ckpt.parent if (ckpt.parent / SPLITS_FILE).is_file() else None)
    out = check_output_dir(out_dir if out_dir is not None else (run_dir or ckpt.parent) / "export", "--out")
    if int8_report is not None:
        check_output_file(int8_report, "--report")
    splits = Splits.load(run_dir) if run_dir is not None and (run_dir / SPLITS_FILE).is_file() else None
    model, card = load_model(ckpt)
    card = card.replace(checkpoint_sha256=file_sha256(ckpt))

    # Calibration images (real photos only; checked before any export work).
    calib_paths: list[Path] = []
    calib_source = ""
    wants_cpu_int8 = "int8" in names
    wants_trt_int8 = "trt-int8" in names or (wants_cpu_int8 and int8_flavours == "both")
    if wants_cpu_int8 or wants_trt_int8:
        if calib_data is not None:
            found, calib_source = int8_mod.find_images(calib_data), str(calib_data)
        elif splits is not None and splits.items.get("train"):
            found, calib_source = splits.paths("train"), f"train split of {run_dir}"
        else:
            raise TledgeError(f"INT8 needs real calibration images: {ckpt} has no {SPLITS_FILE} next to it; "
                              "pass --calib-data DIR (a folder of representative photos)")
        count = int8_mod.DEFAULT_CALIBRATION_IMAGES if calib_images is None else calib_images
        calib_paths = int8_mod.select_calibration_images(found, count, calib_source)
    if int8_budget is not None and (splits is None or not splits.items.get("val")):
        raise TledgeError("--int8-budget searches on the run's val split, and this source has none (a run folder "
                          "trained with a val split is needed); use --int8-recipe or plain --calib-method instead")
    if qat_epochs and (splits is None or not splits.items.get("train")):
        raise TledgeError("--qat-epochs fine-tunes on the run's train split; this source has no splits.json")
    recipe = None
    if int8_recipe is not None:
        from tledge.export.int8_search import load_recipe

        recipe = load_recipe(int8_recipe)
        method, calib_percentile, nodes_to_exclude = recipe["method"], recipe["percentile"], recipe["nodes_to_exclude"]

    # Parity images: the run's test split, --parity-data, or none (with a warning).
    parity_set: ParityData | None = None
    if parity:
        if parity_data is not None:
            parity_set = labelled_folder(parity_data, card)
        elif splits is not None and splits.items.get("test"):
            parity_set = ParityData(splits.paths("test"), splits.labels("test"), f"test split of {run_dir}")
        else:
            echo(f"warning: no parity check: {ckpt} has no test split next to it; pass --parity-data DIR to check")

    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(out)
    result = ExportResult(out)
    echo(f"exporting {ckpt} → {out}/ ({', '.join(f.name for f in fmts)})")

    # ONNX FP32: always (the other formats are built from it). Fixed batch only when no engine needs dynamic N.
    from tledge.export.onnx_export import export_onnx

    onnx_path = artifact_path(out, FORMATS["onnx"])
    onnx_batch = batch if not trt_formats else None
    row = _timed("onnx", "fp32", lambda: export_onnx(model, card, onnx_path, opset=opset, batch=onnx_batch,
                                                      dynamo=exporter == "dynamo"))
    if "onnx" in names:
        result.rows.append(row)

    search, qat_facts = None, None
    with tempfile.TemporaryDirectory(prefix="tledge-export-") as tmp:
        cache = Path(tmp) / f"calibration-{method}.json"  # one calibration, reused by the second flavour
        int8_source = onnx_path  # what gets quantized: the model, or its QAT fine-tuned copy
        if qat_epochs and (wants_cpu_int8 or wants_trt_int8):
            from tledge.export.qat import qat_finetune

            echo(f"quantization-aware fine-tuning: {qat_epochs} epoch(s) on the train split of {run_dir}")
            qmodel, qat_facts = qat_finetune(model, card, splits.paths("train"), splits.labels("train"), qat_epochs,
                                             qat_lr, echo=echo)
            int8_source = Path(tmp) / "model.qat.onnx"
            export_onnx(qmodel, card, int8_source, opset=opset, batch=onnx_batch, dynamo=exporter == "dynamo")
        if int8_budget is not None and (wants_cpu_int8 or wants_trt_int8):
            from tledge.export import int8_search

            val = int8_search.load_val(splits.paths("val"), splits.labels("val"), card, f"val split of {run_dir}")
            search = int8_search.search_int8(onnx_path, int8_source, Path(tmp) / "search", calib_paths, val,
                                             float(int8_budget), int8_methods,
                                             int8_max_groups or int8_search.DEFAULT_MAX_GROUPS, calib_source, echo)
            method, calib_percentile, nodes_to_exclude = search.method, search.percentile, search.nodes_excluded
            cache = search.cache_path
            if not search.fits:
                report = Path(int8_report) if int8_report else out / "int8_report.md"
                int8_search.write_report(report, search, [], {"qat": qat_facts})
                raise ParityError(search.explain() + f"\n(report: {report})")
            int8_search.write_recipe(out / int8_search.RECIPE_FILE, search.recipe())
        common = dict(images=calib_paths, method=method, percentile=calib_percentile,
                      nodes_to_exclude=nodes_to_exclude, calibration_source=calib_source, calibration_cache=cache)
        int8_rows = {}
        if wants_cpu_int8:
            path = artifact_path(out, FORMATS["int8"])
            int8_rows["u8s8"] = _timed("int8", "int8", lambda: int8_mod.quantize_int8(int8_source, path,
                                                                                     flavour="u8s8", **common))
        if wants_trt_int8:
            path = out / INT8_TRT_FILENAME
            int8_rows["s8s8"] = _timed("int8-trt", "int8", lambda: int8_mod.quantize_int8(int8_source, path,
                                                                                         flavour="s8s8", **common))
        facts = {**({"search": search.to_card()} if search else {}), **({"qat": qat_facts} if qat_facts else {}),
                 **({"recipe_source": recipe["source"]} if recipe else {})}
        for row in int8_rows.values():
            if facts:
                int8_mod.record_latency(row.path, facts)
        if len(int8_rows) == 2:
            _compare_flavours(onnx_path, int8_rows, card, echo)
        result.rows.extend(int8_rows.values())

    if trt_formats:
        from tledge.export.tensorrt_build import build_engine

        for fmt in trt_formats:
            precision = fmt.precision
            src = onnx_path if precision == "fp16" else out / INT8_TRT_FILENAME
            engine = artifact_path(out, fmt)
            result.rows.append(_timed(fmt.name, precision, lambda: build_engine(
                src, engine, precision, profile, workspace_mib=workspace, echo=echo)))

    if parity_set is not None:
        _check_parity(result, model, card, parity_set, tolerances, echo)

    if search is not None or qat_facts is not None or recipe is not None or int8_report is not None:
        from tledge.export.int8_search import write_report

        report = write_report(Path(int8_report) if int8_report else out / "int8_report.md", search,
                              [r for r in result.rows if r.kind == "int8"], {"qat": qat_facts, "recipe": recipe})
        echo(f"int8 report: {report}")
    echo(result.table())
    result.next_commands = _next_commands(result, run_dir, parity_data)
    echo("next:\n" + "\n".join(f"  {c}" for c in result.next_commands))
    if not result.passed:
        from tledge.export.parity import parity_message

        raise ParityError(parity_message([r.parity for r in result.rows if r.parity is not None]))
    return result


def _check_int8_options(budget, methods, recipe, nodes, calib_method, calib_percentile, qat_epochs, qat_lr) -> None:
    """Contradictory INT8 options are an error before any work (nothing is silently ignored)."""
    if recipe is not None and (budget is not None or nodes or calib_method or calib_percentile is not None):
        raise TledgeError("--int8-recipe fixes the calibration and the float nodes; it cannot be combined with "
                          "--int8-budget, --exclude-nodes, --calib-method or --calib-percentile")
    if budget is not None and (nodes or calib_method or calib_percentile is not None):
        raise TledgeError("--int8-budget chooses the calibration and the float nodes itself; drop --exclude-nodes, "
                          "--calib-method and --calib-percentile (or use --int8-methods to restrict the candidates)")
    if methods is not None and budget is None:
        raise TledgeError("--int8-methods lists the candidates of the --int8-budget search; give --int8-budget too")
    if qat_lr is not None and not qat_epochs:
        raise TledgeError("--qat-lr applies to quantization-aware fine-tuning; give --qat-epochs N too")
    if methods is not None:
        from tledge.export.int8_search import parse_candidates

        parse_candidates(methods)


def _timed(name: str, kind: str, build: Callable[[], Path]) -> ArtifactRow:
    """Run one format's export the same way for all: time it, size it."""
    started = time.perf_counter()
    path = Path(build())
    seconds = time.perf_counter() - started
    return ArtifactRow(name, path, kind, seconds, path.stat().st_size / 1e6)


def _compare_flavours(onnx_path: Path, rows: dict, card, echo) -> None:
    """Quick batch-1 latency of FP32 and both INT8 flavours on this CPU, recorded in each INT8 card."""
    from tledge.export.int8 import measure_latency_ms, record_latency

    latencies = {"fp32": measure_latency_ms(onnx_path, card)}
    for flavour, row in rows.items():
        latencies[flavour] = measure_latency_ms(row.path, card)
    compared = {k: round(v, 3) for k, v in latencies.items()}
    for flavour, row in rows.items():
        record_latency(row.path, {"latency_ms_batch1": compared[flavour], "latency_compared_ms_batch1": compared})
    echo("  int8 latency, batch 1, this CPU: " + ", ".join(f"{k} {v:.2f} ms" for k, v in compared.items()))
    if latencies["s8s8"] < latencies["u8s8"]:
        echo("  note: symmetric s8s8 is faster than u8s8 on this CPU; model.int8.trt.onnx also runs in ONNX Runtime")


def _check_parity(result: ExportResult, model, card, data, tolerances, echo) -> None:
    import numpy as np
    import torch

    from tledge.export.parity import run_parity

    def reference(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).float().numpy()

    artifacts = [(row.format, row.path, row.kind) for row in result.rows]
    echo(f"parity: {len(data.paths)} images from {data.source}, PyTorch FP32 vs {', '.join(a[0] for a in artifacts)}")
    results, info = run_parity(reference, artifacts, data, card, tolerances)
    for row, parity in zip(result.rows, results):
        row.parity = parity
    result.passed = all(p.passed for p in results)
    if info["skipped"]:
        echo(f"warning: parity skipped {len(info['skipped'])} unreadable image(s): {', '.join(info['skipped'][:5])}")
    report = {"source": info["source"], "images": info["images"], "skipped": info["skipped"],
              "tolerances": tolerances, "passed": result.passed,
              "results": [{**p.to_dict(), "seconds": round(r.seconds, 3), "size_mb": round(r.size_mb, 3)}
                          for r, p in zip(result.rows, results)]}
    result.parity_path = result.out_dir / PARITY_FILE
    atomic_write_bytes(result.parity_path, (json.dumps(report, indent=2) + "\n").encode())


def _next_commands(result: ExportResult, run_dir: Path | None, parity_data) -> list[str]:
    order = ("trt-fp16", "trt-int8", "int8", "onnx")
    preferred = sorted((r for r in result.rows if r.format in order), key=lambda r: order.index(r.format))
    artifact = preferred[0].path if preferred else result.out_dir / "model.onnx"
    commands = [f"tledge predict {artifact} IMAGE_OR_FOLDER_OR_CAMERA"]
    if run_dir is not None:
        commands.append(f"tledge bench {run_dir}")
    else:
        files = " ".join(str(r.path) for r in result.rows)
        commands.append(f"tledge bench {files}" + (f" --data {parity_data}" if parity_data else ""))
    return commands

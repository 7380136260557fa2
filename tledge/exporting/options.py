"""ExportOptions: every `tledge export` option once, with help and range (see tledge.options). The CLI, the
Python API (`tledge.export(run, formats=[...], opset=17)`) and docs/reference.md's table come from these fields.
No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tledge.errors import ExportOptionError, TledgeError
from tledge.exporting.formats import FORMAT_OPTIONS, FORMATS, ExportFormat, parse_formats
from tledge.exporting.int8 import DEFAULT_CALIBRATION_IMAGES
from tledge.exporting.int8_search import DEFAULT_MAX_GROUPS
from tledge.exporting.onnx_export import DEFAULT_OPSET
from tledge.exporting.preprocess_graph import INPUT_FORMATS, OUTPUT_KINDS
from tledge.exporting.qat import DEFAULT_QAT_LR
from tledge.options import changed, option, reuse, validate
from tledge.verification.verify import VerifyOptions

CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_FLAVOURS = ("cpu", "both")
INT8_SEARCH_MODES = ("budget", "full", "off")
EXPORTERS = ("torchscript", "dynamo")
MIN_OPSET, MAX_OPSET = 13, 23  # QDQ per-channel needs 13; torch's exporters stop at 23
TORCHSCRIPT_MAX_OPSET = 20


def parse_names(value: Any) -> tuple[str, ...]:
    """'onnx,int8' or ['onnx', 'int8'] → ('onnx', 'int8')."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(v).strip() for v in items if str(v).strip())


@dataclass
class ExportOptions:
    formats: tuple[str, ...] | None = option(
        None, f"Comma-separated: {', '.join(FORMATS)}.", parse=parse_names,
        show="onnx,int8 (+ trt-fp16 where a GPU and TensorRT are)")
    opset: int = option(DEFAULT_OPSET, "ONNX opset (17 is accepted by TensorRT 8.5 to 11; 18+ uses the dynamo "
                        "exporter).", min=MIN_OPSET, max=MAX_OPSET)
    exporter: str | None = option(None, "Force a PyTorch ONNX exporter (unset: the opset chooses, torchscript for "
                                  "≤ 17, dynamo for 18+).", choices=EXPORTERS)
    batch: int | None = option(None, "ONNX: fix the batch size (default dynamic). TensorRT: the batch the engine is "
                               "tuned for (the ONNX then stays dynamic).", min=1)
    max_batch: int | None = option(None, "TensorRT: largest batch of the optimization profile (unset: 16, or --batch "
                                   "when larger).", min=1)
    workspace: int | None = option(None, "TensorRT: builder workspace limit in MiB (Jetsons: 512-2048).", min=1)
    calib_data: str | None = option(None, "INT8: folder of real images to calibrate on (recursive); default: the "
                                    "run's train split.")
    calib_images: int = option(DEFAULT_CALIBRATION_IMAGES, "INT8: how many calibration images.", min=32)
    calib_method: str | None = option(None, "INT8 calibration; giving it fixes the calibration (no search). Default: "
                                      "the search's choice, minmax without a search.", choices=CALIB_METHODS)
    calib_percentile: float | None = option(None, "INT8: percentile for --calib-method percentile; giving it fixes "
                                            "the calibration (unset: 99.999, or the search's levels).", above=0, max=100)
    int8_flavours: str = option("cpu", "cpu: model.int8.onnx (U8S8, fast on CPU); both: also the symmetric "
                                       "S8S8 model.int8.trt.onnx (always written with trt-int8).",
                                       choices=INT8_FLAVOURS)
    nodes_to_exclude: tuple[str, ...] | None = option(None, "INT8: comma-separated ONNX node names to keep in "
                                                      "float.", flag="--exclude-nodes", parse=parse_names)
    parity_data: str | None = option(None, "Labelled folder (one subfolder per class) for the parity check; "
                                     "default: the run's test split.")
    tolerance: str | None = reuse(VerifyOptions, "tolerance")  # one definition: the gates export and verify share
    parity: bool = option(True, "Skip the parity check.", flag="--no-parity", negate=True)
    pack_images: int = option(2500, "Parity pack beside the artifacts (for `tledge verify` on another device): at "
                                    "most this many of the parity images, a seeded class-stratified sample; 0: no "
                                    "pack.", min=0)
    int8_search: str | None = option(None, "INT8 accuracy search on the run's val split. budget (default when the "
                                      "run has a val split): candidates cheapest first, stop at the first the val "
                                      "data show within the budget; full: every candidate, then the most agreeing "
                                      "one; off: plain --calib-method. Fixing --calib-method/--exclude-nodes/"
                                      "--int8-recipe means off.", choices=INT8_SEARCH_MODES)
    int8_budget: float | None = option(None, "INT8 search: accuracy drop allowed vs FP32 on val, in points (default: "
                                       "the int8 parity tolerance, 1.0); if no calibration fits, the most sensitive "
                                       "layers are kept in float (exit 3 if the val data show it cannot fit); below "
                                       "0 demands a gain.", min=-100, max=100)
    int8_methods: str | None = option(None, "INT8 search candidates, tried in this order, e.g. "
                                      "minmax,percentile:99.99,entropy (default minmax, percentile "
                                      "99.9/99.99/99.999, entropy: cheapest first).")
    int8_max_groups: int = option(DEFAULT_MAX_GROUPS, "INT8 search: at most this many layer groups kept in float.",
                                  min=0)
    int8_recipe: str | None = option(None, "INT8: reuse a search's decisions without searching: "
                                     "RUN/export/int8_recipe.json, or an INT8 ONNX written by tledge (its card "
                                     "holds the recipe).")
    int8_report: str | None = option(None, "INT8: Markdown report of the search and final parity (default "
                                     "RUN/export/int8_report.md when searching or fine-tuning).", flag="--report")
    qat_epochs: int | None = option(None, "INT8: quantization-aware fine-tuning on the train split for N epochs "
                                    "before quantizing.", min=1)
    qat_lr: float = option(DEFAULT_QAT_LR, "INT8: learning rate of --qat-epochs (cosine to 0, SGD momentum 0.9; "
                           "activation ranges frozen after the first epoch).", above=0)
    qat_images: int | None = option(None, "INT8: --qat-epochs sees a fresh random sample of this many train images "
                                    "per epoch (default: all; on a CPU an epoch at 224 px costs ~0.25 s per image).",
                                    min=1)
    input: str = option("float", "Also write an ONNX with the preprocessing in its graph: uint8 (model.uint8.onnx, "
                               "uint8 RGB NHWC), uint8-nchw, or pixels (float 0-255 NCHW: DeepStream's exact config); "
                               "fixed H×W, /255 and per-channel mean/std inside. Default float: model.onnx only.",
                               choices=INPUT_FORMATS)
    output: str = option("logits", "probs: that ONNX ends with a softmax (output `probs`; model.probs.onnx with "
                                "--input float). Default logits.", choices=OUTPUT_KINDS)
    out: str | None = option(None, "Output folder (default RUN/export).")

    def __post_init__(self) -> None:
        for name in ("formats", "nodes_to_exclude"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                setattr(self, name, parse_names(value))
        for name in ("calib_data", "parity_data", "int8_recipe", "int8_report", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                setattr(self, name, str(value))  # a Path from Python callers
        if self.nodes_to_exclude == ():
            self.nodes_to_exclude = None
        validate(self)
        if self.formats is not None:
            parse_formats(self.formats)
        if self.exporter == "torchscript" and self.opset > TORCHSCRIPT_MAX_OPSET:
            raise TledgeError(f"--opset {self.opset}: the torchscript exporter writes opset ≤ {TORCHSCRIPT_MAX_OPSET}; "
                              "use --exporter dynamo or a lower --opset")
        if self.batch is not None and self.max_batch is not None and self.batch > self.max_batch:
            raise TledgeError(f"need --batch ≤ --max-batch, got --batch {self.batch} --max-batch {self.max_batch}")

    def fixed_calibration_method(self) -> str:
        """The calibration method when no search chooses one: --calib-method, else minmax."""
        return self.calib_method or "minmax"

    def search_budget(self, tolerances: dict) -> float:
        """--int8-budget, or unset: the int8 parity gate's accuracy drop (the search aims where the gate judges)."""
        return float(self.int8_budget) if self.int8_budget is not None else tolerances["int8"]["acc_drop"]

    def out_dir(self, source_dir: Path) -> Path:
        """--out, or unset: SOURCE/export beside the run folder or checkpoint."""
        return Path(self.out) if self.out is not None else Path(source_dir) / "export"

    def engine_max_batch(self) -> int:
        """--max-batch, or unset: 16, or --batch when that is larger (the engines' profile)."""
        from tledge.exporting.tensorrt_build import DEFAULT_MAX_BATCH

        return self.max_batch if self.max_batch is not None else max(self.batch or 1, DEFAULT_MAX_BATCH)

    def changed(self) -> dict[str, object]:
        """The options given a value other than their default: what the format check judges."""
        return changed(self)


def int8_search_mode(o: ExportOptions) -> str:
    """The INT8 search mode ("budget", "full" or "off"); contradictory options are an error before any work.

    The accuracy-budgeted search is the default; fixing the calibration yourself (--calib-method,
    --calib-percentile, --exclude-nodes, --int8-recipe) means no search, and asking for both is an error.
    (`o.int8_search` is one of INT8_SEARCH_MODES or None: ExportOptions checked it.)
    """
    fixed = [flag for flag, value in (("--int8-recipe", o.int8_recipe), ("--exclude-nodes", o.nodes_to_exclude),
                                      ("--calib-method", o.calib_method),
                                      ("--calib-percentile", o.calib_percentile))
             if value]
    if o.int8_recipe is not None and len(fixed) > 1:
        raise TledgeError("--int8-recipe fixes the calibration and the float nodes; it cannot be combined with "
                          "--exclude-nodes, --calib-method or --calib-percentile")
    searching = [flag for flag, value in (("--int8-budget", o.int8_budget), ("--int8-methods", o.int8_methods),
                                          ("--int8-search", o.int8_search if o.int8_search != "off" else None))
                 if value is not None]
    if fixed and searching:
        raise TledgeError(f"{searching[0]} asks the INT8 search to choose the calibration and the float nodes, and "
                          f"{fixed[0]} fixes them; drop one (--int8-methods restricts the search's candidates)")
    if o.int8_search == "off" and (o.int8_budget is not None or o.int8_methods is not None):
        raise TledgeError("--int8-budget and --int8-methods belong to the INT8 search; drop them or --int8-search off")
    given = o.changed()
    for flag, name in (("--qat-lr", "qat_lr"), ("--qat-images", "qat_images")):
        if name in given and not o.qat_epochs:
            raise TledgeError(f"{flag} applies to quantization-aware fine-tuning; give --qat-epochs N too")
    if o.int8_methods is not None:
        from tledge.exporting.int8_search import parse_candidates

        parse_candidates(o.int8_methods)
    if fixed or o.int8_search == "off":
        return "off"
    return o.int8_search or "budget"


def check_options(formats: Iterable[ExportFormat], options: ExportOptions) -> None:
    """Raise ExportOptionError for an option given a value other than its default that none of `formats` uses."""
    formats = list(formats)
    used = frozenset().union(*(f.options for f in formats))
    for name in options.changed():
        if name not in FORMAT_OPTIONS or name in used:
            continue
        users = [f.name for f in FORMATS.values() if name in f.options]
        raise ExportOptionError(
            f"{option_flag(name)} applies to {', '.join(users)}, not to the formats asked for "
            f"({', '.join(f.name for f in formats)})"
        )


def option_flag(name: str) -> str:
    """How export option `name` is spelled on the command line (from ExportOptions, where it is defined)."""
    from tledge.options import options_of

    return next((opt.flag for opt in options_of(ExportOptions) if opt.name == name), name)

"""`tledge verify ARTIFACT`: re-run an artifact's parity check where it runs, from the parity pack beside it.

The pack (tledge.provenance.pack) holds the labelled photos, and the PyTorch FP32 logits the exporting
machine computed for them, so a device needs neither torch nor the dataset: the artifact runs through the
same backend `tledge predict` uses, and its logits are judged by the same function and gate as export's
parity (tledge.verification.parity.judge: agreement and accuracy difference with 95% intervals; within → exit 0,
over → 3, inconclusive → 4). The verdict is added, with this environment, to `<artifact>.verdicts.json`.
"""

from __future__ import annotations

import logging
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from tledge.errors import ParityError, ParityInconclusive, TledgeError
from tledge.logs import log_note
from tledge.options import option, validate
from tledge.devices import DEVICE_HELP, THREADS_HELP, parse_device
from tledge.runtime.options import PROVIDERS

log = logging.getLogger(__name__)

VERIFY_BATCH = 32
EXIT_CODES = {"within": 0, "over": ParityError.exit_code, "inconclusive": ParityInconclusive.exit_code}


@dataclass
class VerifyOptions:
    """Everything `tledge verify ARTIFACT` takes."""

    artifact: str = option(help="An exported artifact (.onnx, .engine, .xml) to check on this device, or an export "
                                "folder (each artifact export checked in it).", argument=True)
    pack: str | None = option(None, "Parity pack folder (default: parity-pack/ beside the artifact).")
    provider: str | None = option(None, "ONNX Runtime provider to check: tensorrt, cuda or cpu, or openvino for "
                                        "the .onnx run by OpenVINO (default: what predict would use).",
                                  choices=PROVIDERS)
    device: str = option("auto", DEVICE_HELP, parse=parse_device)
    threads: int | None = option(None, THREADS_HELP, min=1)
    tolerance: str | None = option(None, "Override parity gates: KIND=VALUE or KIND.METRIC=VALUE, comma-separated; "
                                   "kinds onnx, fp16, int8; metrics agreement (%), acc_drop (pt), rel_diff. E.g. "
                                   "int8=2.0,onnx=1e-3")
    record: bool = option(True, "Do not write the verdict beside the artifact.", flag="--no-record", negate=True)

    def __post_init__(self) -> None:
        self.artifact = str(self.artifact)
        self.device = parse_device(self.device)
        validate(self)


@dataclass
class VerifyResult:
    artifact: Path
    parity: object  # ParityResult
    environment: dict
    pack: Path
    inputs_differ: int = 0  # pack images whose preprocessed tensor differs from the exporting machine's
    verdict_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return self.parity.outcome

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.parity.outcome]


def verify(artifact: str | Path, *, raise_on_failure: bool = False,
           **values) -> VerifyResult | list[VerifyResult]:
    """Check `artifact` on this device against its parity pack (see module doc); `values` are VerifyOptions
    fields. An export folder checks every artifact export judged in it (a list of results). Raises
    ParityError (over) or ParityInconclusive when `raise_on_failure`, as the CLI does (the worst outcome last,
    after every artifact was checked)."""
    from tledge.options import build

    from tledge.stats import combine
    from tledge.provenance import pack as packs

    options = build(VerifyOptions, {"artifact": artifact, **values}, "verify option")
    if not Path(options.artifact).is_dir():
        return run_verify(options, raise_on_failure=raise_on_failure)
    artifacts = folder_artifacts(Path(options.artifact))
    pack = packs.read_pack(packs.find_pack(artifacts[0], options.pack))  # one pack, checked once, for them all
    results = [run_verify(dataclasses.replace(options, artifact=str(path)), pack=pack)
               for path in artifacts]
    if raise_on_failure:
        raise_worst(results)
    return results


def raise_worst(results: VerifyResult | list[VerifyResult]) -> None:
    """The worst verdict of one or several results, raised (nothing when all are within budget)."""
    from tledge.stats import combine

    results = results if isinstance(results, list) else [results]
    worst = combine([r.outcome for r in results])
    if worst != "within":
        raise_verdict(next(r for r in results if r.outcome == worst))


def folder_artifacts(folder: Path) -> list[Path]:
    """The artifacts of an export folder that export judged (those with a verdict file), in name order."""
    from tledge.provenance.verdicts import SUFFIX
    from tledge.runtime.backends import exported_suffixes

    found = sorted(p for p in folder.iterdir() if p.suffix in exported_suffixes()
                   and p.with_name(p.name + SUFFIX).is_file())
    if not found:
        raise TledgeError(f"{folder}: no exported artifact with a parity verdict here (an export folder holds "
                          "model.onnx and model.onnx.verdicts.json); pass the artifact file")
    return found


def run_verify(options: VerifyOptions, raise_on_failure: bool = False,
               pack=None) -> VerifyResult:
    """Verify one artifact; `pack` is its pack when the caller has already read (and checked) it. The verdict
    is the result (format_verify shows it); the steps are logged."""
    from tledge.verification.parity import parity_backend_options, run_on_images, judge, parse_tolerance
    from tledge.runtime.backends import backend_options, exported_suffixes, kind_of, load_backend
    from tledge.provenance import environment, pack as packs, verdicts

    path = Path(options.artifact)
    if not path.exists():
        raise TledgeError(f"no such file: {path}")
    if not kind_of(path).exported:
        raise TledgeError(f"{path}: verify checks exported artifacts ({', '.join(exported_suffixes())}) against the PyTorch "
                          "reference; a checkpoint is that reference")
    if pack is None:
        pack = packs.read_pack(packs.find_pack(path, options.pack))
    folder = pack.folder
    tolerances = parse_tolerance(options.tolerance) if options.tolerance else (
        pack.manifest.get("tolerances") or parse_tolerance(None))
    chosen = backend_options(path, given={"provider": options.provider}, defaults={"threads": options.threads})
    card_kind = None
    backend = None
    try:
        from tledge.runtime.info import read_card

        card = read_card(path)
        card_kind = card.precision if card.precision in ("fp32", "fp16", "int8") else "fp32"
        _check_pack_matches(path, card, pack)
        backend = load_backend(path, options.device, **chosen, **parity_backend_options(path, card_kind))
        notes = list(getattr(backend, "notes", ()))
        for note in notes:
            log_note(log, note)
        env = environment.describe(backend.name)
        log.info(f"verify: {path.name} on {len(pack.paths)} pack images ({pack.source}); running on "
                 f"{environment.short(env)}")
        # the pack's checksums are of the normalized float tensors: a uint8-input model gets those too (its
        # backend turns them back into its pixels)
        float_card = card.replace(layout="NCHW", extra={k: v for k, v in card.extra.items() if k != "input"})
        (logits,), info = run_on_images(None, [backend], pack.paths, pack.labels, float_card, VERIFY_BATCH,
                                        pack.source)
    finally:
        if backend is not None:
            backend.close()
    if info["skipped"]:
        raise TledgeError(f"{folder}: {len(info['skipped'])} pack image(s) do not decode on this machine "
                          f"(e.g. {info['skipped'][0]}): its OpenCV cannot read them")
    differ = sum(1 for mine, theirs in zip(info["input_sha"], pack.input_sha) if theirs and mine != theirs)
    parity = judge(path.name, path, card_kind, backend.name, pack.reference, logits, info["labels"], card, tolerances,
                   output=card.output_kind)
    result = VerifyResult(path, parity, env, folder, differ, notes=notes)
    if differ:
        result.notes.append(f"note: {differ} of {len(pack.paths)} pack images decode to other pixels here than on "
                            "the exporting machine (another OpenCV/libjpeg): the comparison includes that difference")
        log_note(log, result.notes[-1])
    if options.record:
        try:
            result.verdict_file = verdicts.record(path, verdicts.make_verdict(
                parity, "verify", env, pack_images=len(pack.paths), tolerances=tolerances, inputs_differ=differ))
        except OSError as exc:  # a read-only mount: the verdict is still printed
            log.warning(f"could not write {verdicts.verdicts_path(path)} ({exc.strerror or exc})")
    if raise_on_failure and result.exit_code:
        raise_verdict(result)
    return result


def raise_verdict(result: VerifyResult) -> None:
    """The CLI's error for an over-budget (exit 3) or inconclusive (exit 4) verdict."""
    parity, name = result.parity, result.artifact.name
    if parity.outcome == "over":
        raise ParityError(f"verify: {name} is over its parity budget here: {'; '.join(parity.failures)}")
    need = (f"; at least {parity.images_needed:,} labelled images would settle it" if parity.images_needed else "")
    raise ParityInconclusive(f"verify: {name}: {'; '.join(parity.doubts)} ({parity.images} pack images "
                             f"resolve a drop of {parity.resolvable_drop:.2f} pt{need})")


def _check_pack_matches(path: Path, card, pack) -> None:
    if list(card.class_names) != pack.class_names:
        raise TledgeError(f"{pack.folder} is the parity pack of a model with classes {pack.class_names}, not of "
                          f"{path.name} ({card.class_names}); pass --pack with the pack of its export")
    made_for = pack.manifest.get("checkpoint_sha256", "")
    if made_for and card.checkpoint_sha256 and made_for != card.checkpoint_sha256:
        raise TledgeError(f"{pack.folder} was made from another checkpoint than {path.name} (sha256 "
                          f"{made_for[:12]} vs {card.checkpoint_sha256[:12]}); export again or pass --pack")


def format_verify(result: VerifyResult) -> str:
    from tledge.table import format_table
    from tledge.provenance import environment

    from tledge.verification.parity import table_cells

    p = result.parity
    cells = {k: v for k, v in table_cells(p).items() if k != "resolves pt"}  # verify's table as it was
    row = {"artifact": result.artifact.name, "kind": p.kind, **cells, "verdict": p.outcome}
    lines = [format_table([row]), f"environment: {environment.short(result.environment)}"]
    lines += [f"  over: {f}" for f in p.failures] + [f"  unsettled: {d}" for d in p.doubts]
    if result.verdict_file:
        lines.append(f"verdict recorded in {result.verdict_file}")
    return "\n".join(lines)

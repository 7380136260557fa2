"""What `tledge export` returns: one row per artifact (file, size, time, parity, status) and the result as a
whole (`result["int8"]` is a Path, `.parity` the rows, `.exit_code`), and the rule that turns failed steps and
parity outcomes into the one error the export ends with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tledge.errors import ParityError, ParityInconclusive, TledgeError
from tledge.table import format_table

# Outcome severity for the exit code: a crash (1) outranks a user-fixable failure (2), which outranks parity (3).
SEVERITY = {0: 0, 4: 1, 3: 1, 2: 2, 1: 3}


class ExportFailed(TledgeError):
    """One or more export steps failed (the others ran; their rows and parity.json are written)."""


@dataclass
class ArtifactRow:
    format: str  # row name: a format name, or "int8-trt" for the symmetric TensorRT input
    path: Path | None
    kind: str  # fp32 | fp16 | int8 (what the parity gate judges it as)
    seconds: float = 0.0
    size_mb: float = 0.0
    parity: object | None = None  # ParityResult
    error: str | None = None  # why the step failed or was skipped
    exit_code: int = 0  # of the step's failure (2 user error, 3 budget, 1 crash)
    failure: TledgeError | None = None  # the step's own error, when it was a TledgeError

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        if self.error is not None:
            return self.error
        if self.parity is None:
            return "ok (no parity)"
        return {"within": "ok", "over": "OVER budget", "inconclusive": "inconclusive"}[self.parity.outcome]

    def table_row(self) -> dict:
        from tledge.verification.parity import table_cells

        return {"format": self.format, "file": self.path.name if self.path else "-",
                "size MB": round(self.size_mb, 2) if self.ok else None,
                "time s": round(self.seconds, 2), **table_cells(self.parity), "status": self.status}


@dataclass
class ExportResult:
    """What an export wrote: `result["int8"]` is the artifact's Path, `result.parity` the parity rows."""

    out_dir: Path
    rows: list[ArtifactRow] = field(default_factory=list)
    parity_path: Path | None = None
    outcome: str = "within"  # parity: within | over | inconclusive (the worst of the checked artifacts)
    parity_source: str = ""  # where the parity images came from
    next_commands: list[str] = field(default_factory=list)
    failure: TledgeError | None = None  # the worst step failure or parity failure, None when all is well
    deploy_files: list[Path] = field(default_factory=list)  # labels.txt, DeepStream/Triton configs, DEPLOY.md
    deploy_commands: list[str] = field(default_factory=list)  # jetson-inference / Triton lines for "next:"

    def table(self) -> str:
        return format_table([r.table_row() for r in self.rows])

    def report(self) -> str:
        """What `tledge export` prints when it is done: the table, then the next commands."""
        text = self.table()
        if self.next_commands:
            text += "\nnext:\n" + "\n".join(f"  {c}" for c in self.next_commands)
        return text

    @property
    def passed(self) -> bool:
        """Every checked artifact within its parity tolerance (the data show it)."""
        return self.outcome == "within"

    def path(self, name: str) -> Path:
        return self[name]

    def __getitem__(self, name: str) -> Path:
        for row in self.rows:
            if row.format == name:
                if row.path is None or not row.ok:
                    raise KeyError(f"{name}: {row.status}")
                return row.path
        raise KeyError(f"{name} was not exported (formats: {', '.join(r.format for r in self.rows)})")

    def __contains__(self, name: object) -> bool:
        return any(r.format == name and r.ok for r in self.rows)

    @property
    def parity(self) -> list[dict]:
        """One dict per checked artifact: format, images, agreement, accuracy difference, passed, ..."""
        return [{"format": r.format, **r.parity.to_dict()} for r in self.rows if r.parity is not None]

    @property
    def exit_code(self) -> int:
        return 0 if self.failure is None else self.failure.exit_code


def worst_outcome(result: ExportResult) -> TledgeError | None:
    """The error the export ends with: the most severe step failure, else the parity failure, else None."""
    failures = [r for r in result.rows if r.error is not None and not r.error.startswith("skipped")]
    if failures:
        worst = max(failures, key=lambda r: SEVERITY.get(r.exit_code, 3))
        if len(failures) == 1 and worst.failure is not None:
            return worst.failure
        text = "; ".join(f"{r.format}: {r.error}" for r in failures)
        error = ExportFailed(f"export step failed: {text}")
        error.exit_code = worst.exit_code
        return error
    checked = [r.parity for r in result.rows if r.parity is not None]
    if result.outcome == "over":
        from tledge.verification.parity import parity_message

        return ParityError(parity_message(checked))
    if result.outcome == "inconclusive":
        from tledge.verification.parity import inconclusive_message

        return ParityInconclusive(inconclusive_message(checked, result.parity_source))
    return None


def next_commands(result: ExportResult, run_dir: Path | None, parity_data) -> list[str]:
    order = ("trt-fp16", "trt-int8", "int8", "onnx")
    preferred = sorted((r for r in result.rows if r.format in order and r.ok), key=lambda r: order.index(r.format))
    if not any(r.ok for r in result.rows):
        return []  # nothing was written: no command to name a file that does not exist
    artifact = preferred[0].path if preferred else result.out_dir / "model.onnx"
    commands = [f"tledge predict {artifact} IMAGE_OR_FOLDER_OR_CAMERA"]
    if run_dir is not None:
        commands.append(f"tledge bench {run_dir}")
    else:
        files = " ".join(str(r.path) for r in result.rows if r.ok)
        commands.append(f"tledge bench {files}" + (f" --data {parity_data}" if parity_data else ""))
    if preferred and (result.out_dir / "parity-pack").is_dir():  # the pack travels with the folder
        commands.append(f"tledge verify {artifact}   # on the device, after copying {result.out_dir}/ there")
    return commands + list(result.deploy_commands)

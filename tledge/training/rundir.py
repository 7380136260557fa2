"""Run folders: runs/exp, runs/exp2, … (or --name), and the files every run holds."""

from __future__ import annotations

import re
from pathlib import Path

from tledge.errors import TledgeError

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CARD_FILE = "card.json"


def check_run_target(project: str | Path, name: str | None = None, exist_ok: bool = False) -> None:
    """Before any work: --project is a writable folder (or can be made), --name stays inside it and is free."""
    from tledge.paths import check_name_inside, check_output_dir

    check_output_dir(project, "--project")
    check_name_inside(project, name)
    if name:
        path = Path(project) / name
        if path.exists() and not path.is_dir():
            raise TledgeError(f"--name {name}: {path} is a file; choose another --name")
        if path.is_dir() and any(path.iterdir()) and not exist_ok:
            raise TledgeError(f"{path} already exists; choose another --name, pass --exist-ok, or --resume {path}")


def new_run_dir(project: str | Path, name: str | None = None, exist_ok: bool = False) -> Path:
    """The next free runs/expN (exp, exp2, exp3 …), or runs/NAME."""
    project = Path(project)
    check_run_target(project, name, exist_ok)
    if name:
        path = project / name
    else:
        path = project / next_free_name(project, "exp")
    path.mkdir(parents=True, exist_ok=True)
    return path


def next_free_name(project: Path, prefix: str) -> str:
    """prefix, prefix2, prefix3 …: one more than the highest taken in `project`."""
    taken = {p.name for p in project.glob(f"{prefix}*")} if project.is_dir() else set()
    numbers = [int(m.group(1) or 1) for t in taken if (m := re.fullmatch(rf"{re.escape(prefix)}(\d*)", t))]
    nxt = max(numbers, default=0) + 1
    return prefix if nxt == 1 else f"{prefix}{nxt}"

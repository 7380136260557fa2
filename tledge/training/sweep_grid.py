"""Sweep grids: the axes a sweep may vary (TrainConfig options, with their types and ranges from there),
every combination of their values as named cells, and the checks that run before any cell trains.
No torch at import time."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tledge.errors import TledgeError
from tledge.options import options_of
from tledge.training.checks import check_model, check_names
from tledge.training.config import TrainConfig

# Options a grid may vary, with their type (from TrainConfig's option fields, where their ranges live too).
# The order is also the order of name tokens and table columns.
AXES = ("model", "freeze", "optimizer", "lr", "epochs", "img_size", "batch_size", "augment", "head", "weights",
        "seed", "kfold", "dropout", "weight_decay", "momentum", "scheduler", "resize", "label_smoothing",
        "warmup_epochs", "patience", "cache_views")
_TRAIN_OPTIONS = {o.name: o for o in options_of(TrainConfig)}
AXIS_TYPES: dict[str, type] = {axis: _TRAIN_OPTIONS[axis].base_type for axis in AXES}
# How a varying axis appears in a cell name: prefix + value ("" = the value alone).
NAME_PREFIX = {"model": "", "optimizer": "", "freeze": "freeze_", "lr": "lr", "epochs": "ep", "img_size": "px",
               "batch_size": "bs", "augment": "aug_", "head": "head_", "weights": "w_", "seed": "seed",
               "kfold": "kfold", "dropout": "drop", "weight_decay": "wd", "momentum": "mom",
               "scheduler": "sched_", "resize": "resize_", "label_smoothing": "ls", "warmup_epochs": "warm",
               "patience": "pat", "cache_views": "views"}
AXIS_ALIASES = {"models": "model", "optimizers": "optimizer"}


@dataclass
class Cell:
    """One grid point: a deterministic, filesystem-safe name and the TrainConfig it trains."""

    name: str
    config: TrainConfig
    values: dict[str, Any] = field(default_factory=dict)  # axis → this cell's value


# --------------------------------------------------------------------------------------------- the grid
def normalize_axes(axes: dict[str, Any]) -> dict[str, list]:
    """Axis names to TrainConfig fields (`img-size`/`models` → img_size/model), values to lists."""
    result: dict[str, list] = {}
    for key, values in axes.items():
        name = AXIS_ALIASES.get(key, key).replace("-", "_")
        if name not in AXIS_TYPES:
            raise TledgeError(f"cannot sweep over {key!r}; grid axes are: {', '.join(AXIS_TYPES)}")
        if name in result:
            raise TledgeError(f"grid axis {name!r} is given twice")
        result[name] = list(values) if isinstance(values, (list, tuple)) else [values]
    return result


def coerce(axis: str, value: Any) -> Any:
    """A grid value (text from the command line, or JSON) as the option's type; bad ones are one-line errors."""
    kind = AXIS_TYPES[axis]
    if axis == "lr" and (value is None or str(value).strip().lower() in ("", "none", "default")):
        return None  # the optimizer's usual rate
    try:
        if kind is int:
            number = float(value)
            if number != int(number) or isinstance(value, bool):
                raise ValueError
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        text = str(value).strip()
        if not text:
            raise ValueError
        return text
    except (TypeError, ValueError):
        raise TledgeError(f"bad {axis} value {value!r} in the grid; expected {kind.__name__}") from None


def _token(axis: str, value: Any) -> str:
    if value is None:
        text = "default"
    elif isinstance(value, float):
        text = format(value, "g")
    elif axis == "weights" and value not in ("imagenet", "none"):
        text = Path(value).stem
    else:
        text = str(value).replace(":", "")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", NAME_PREFIX.get(axis, axis) + text)


def expand_grid(base: TrainConfig, axes: dict[str, Sequence]) -> list[Cell]:
    """Every combination of the axes' values applied to `base`, first axis slowest. A cell's name is the
    model, then `<axis token>` for each axis with more than one value, joined by '-'
    (resnet18-freeze_stages2-adam); axes with one value just set that option."""
    axes = normalize_axes(axes)
    grid: dict[str, list] = {}
    for axis, values in axes.items():
        if not values:
            raise TledgeError(f"grid axis {axis!r} has no values")
        coerced = [coerce(axis, v) for v in values]
        if len(set(map(repr, coerced))) != len(coerced):
            raise TledgeError(f"grid axis {axis!r} repeats a value: {values}")
        grid[axis] = coerced
    varying = [a for a in grid if len(grid[a]) > 1 and a != "model"]
    combos: list[dict] = [{}]
    for axis, values in grid.items():
        combos = [{**combo, axis: v} for combo in combos for v in values]
    cells, seen = [], {}
    for combo in combos:
        try:
            config = dataclasses.replace(base, **combo)
        except TledgeError as exc:
            raise TledgeError(f"grid cell {combo}: {exc}") from None
        name = "-".join([_token("model", config.model)] + [_token(a, combo[a]) for a in varying])
        if name in seen:
            raise TledgeError(f"grid cells {seen[name]} and {combo} would share the folder name {name!r}")
        seen[name] = combo
        cells.append(Cell(name, config, {a: combo[a] for a in grid}))
    return cells


def validate_cells(cells: Sequence[Cell]) -> None:
    """Catch what would fail in training before any cell trains: unknown model/optimizer/head/scheduler/
    augmentation, bad freeze syntax or depth, a weights file that is not there, an input size the model
    cannot take (checked by a forward pass on the meta device: no memory, no weights)."""
    if not cells:
        raise TledgeError("the grid has no cells")
    checked: set = set()
    for cell in cells:
        c = cell.config
        where = f"cell {cell.name}: "
        try:
            check_names(c)
            key = (c.model, c.freeze, c.img_size, c.head, tuple(sorted(c.arch_kwargs.items())))
            if key not in checked:
                check_model(c)
                checked.add(key)
        except TledgeError as exc:
            raise TledgeError(where + str(exc)) from None
    data = Path(cells[0].config.data)
    if not data.is_dir():
        raise TledgeError(f"data folder {data} not found")

"""Fit diagnosis: read the training curves the way a supervisor would (good fit, overfitting since
epoch k, underfitting, too few epochs) and say why in one sentence."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tledge.training.history import _accuracy_columns, _column, best_epoch_index

VERDICTS = ("good fit", "overfitting", "underfitting", "too few epochs")

# diagnose_fit thresholds (see its docstring)
OVERFIT_GAP = 0.15  # final train_acc − val_acc above this: overfitting
PREPROCESSING_GAP = 0.5  # a gap this large is more often a train/eval preprocessing mismatch than overfitting
PREPROCESSING_HINT = "check that evaluation uses the same preprocessing as training"
UNDERFIT_FRACTION = 0.6  # final train acc below chance + 0.6·(1 − chance): underfitting
MIN_LOSS_DROP = 0.10  # train loss fell less than 10% of its first value: underfitting
VAL_RISE_EPOCHS = 2  # val loss above its minimum for this many epochs while train loss fell: overfitting
VAL_RISE_MIN = 0.02  # ... and the last val loss at least 2% above the minimum (not noise)
STILL_IMPROVING = 0.10  # last VAL_RISE_EPOCHS epochs gave ≥10% of the total val-loss drop: too few epochs
MIN_EPOCHS = 3


def diagnose_fit(rows: Sequence[dict], num_classes: int | None = None) -> dict:
    """Read the training curves the way a supervisor would, and say so in one sentence.

    Returns {"verdict", "since_epoch", "reason", "gap", "best_epoch", "warnings"} where gap is the final
    train_acc − val_acc (None without accuracies) and best_epoch the best validation epoch. Rules, first
    match wins:

    1. No epochs → "too few epochs".
    2. "overfitting" when either
       a. the final gap exceeds 0.15; since_epoch = first epoch of the final run of epochs whose gap
          stayed above 0.15 (the epoch the gap first exceeded it for good), or
       b. the val loss stayed above its minimum for ≥ 2 epochs after it, ends ≥ 2% above it, and the
          train loss kept falling meanwhile; since_epoch = the epoch after the minimum.
       Both can hold; since_epoch is then the earlier one. Checked before the epoch count, because a
       huge gap after one epoch is already worth shouting about.
    3. Fewer than 3 epochs → "too few epochs" (too short to judge).
    4. "too few epochs" when training is still improving: the last epoch has the lowest val loss and the
       last 2 epochs gave ≥ 10% of the whole val-loss drop (train loss when there is no val loss).
    5. "underfitting" when the final train accuracy is below chance + 0.6·(1 − chance), chance being
       1/num_classes (0 without num_classes, i.e. below 0.6), or the train loss fell < 10% from epoch 1.
    6. Otherwise "good fit".
    Whatever the verdict, a gap above 0.5 appends "check that evaluation uses the same preprocessing as
    training" to the reason (and to warnings): 89% train / 18% val is rarely plain overfitting, it is
    usually a different resize/normalisation at evaluation time.
    """
    result: dict = {"verdict": "good fit", "since_epoch": None, "reason": "", "gap": None, "best_epoch": None,
                    "warnings": []}
    if not rows:
        return {**result, "verdict": "too few epochs", "reason": "no epochs were recorded"}
    epochs = [int(r["epoch"]) for r in rows]
    train_loss, val_loss = _column(rows, "train_loss"), _column(rows, "val_loss")
    train_acc, val_acc = _accuracy_columns(rows)
    gaps = train_acc - val_acc
    gap = None if np.isnan(gaps[-1]) else round(float(gaps[-1]), 6)
    best = best_epoch_index(rows)
    result["gap"] = gap
    result["best_epoch"] = None if best is None else epochs[best]

    verdict, since, reason = _overfitting(epochs, train_loss, val_loss, train_acc, val_acc, gaps)
    if verdict is None:
        verdict, since, reason = _short_or_underfit(epochs, train_loss, val_loss, train_acc, num_classes)
    if verdict is None:
        verdict = "good fit"
        reason = (f"final train accuracy {_fmt(train_acc[-1])} and val accuracy {_fmt(val_acc[-1])} "
                  f"(gap {_fmt(gap)}), val loss {_fmt(val_loss[-1], 4)} not rising after "
                  f"{len(rows)} epochs")
    if gap is not None and gap > PREPROCESSING_GAP:
        warning = (f"a train/val accuracy gap of {gap:.2f} is rarely plain overfitting: "
                   f"{PREPROCESSING_HINT}")
        result["warnings"].append(warning)
        reason = f"{reason}; {warning}"
    result.update(verdict=verdict, since_epoch=since, reason=reason)
    return result


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _overfitting(epochs, train_loss, val_loss, train_acc, val_acc, gaps):
    reasons, starts = [], []
    if not np.isnan(gaps[-1]) and gaps[-1] > OVERFIT_GAP:
        start = len(gaps) - 1
        while start > 0 and gaps[start - 1] > OVERFIT_GAP:
            start -= 1
        starts.append(epochs[start])
        reasons.append(f"final train accuracy {train_acc[-1]:.3f} vs val accuracy {val_acc[-1]:.3f} "
                       f"(gap {gaps[-1]:.3f} > {OVERFIT_GAP}, above it since epoch {epochs[start]})")
    if not np.all(np.isnan(val_loss)):
        low = int(np.nanargmin(val_loss))
        after = val_loss[low + 1:]
        rose = (after.size >= VAL_RISE_EPOCHS and np.all(after > val_loss[low])
                and val_loss[-1] >= val_loss[low] * (1 + VAL_RISE_MIN))
        if rose and train_loss[-1] < train_loss[low]:
            starts.append(epochs[low + 1])
            reasons.append(f"val loss rose from {val_loss[low]:.4f} at epoch {epochs[low]} to "
                           f"{val_loss[-1]:.4f} at epoch {epochs[-1]} while train loss fell from "
                           f"{train_loss[low]:.4f} to {train_loss[-1]:.4f}")
    if not reasons:
        return None, None, ""
    return "overfitting", min(starts), " and ".join(reasons)


def _short_or_underfit(epochs, train_loss, val_loss, train_acc, num_classes):
    if len(epochs) < MIN_EPOCHS:
        return "too few epochs", None, f"only {len(epochs)} epoch(s): at least {MIN_EPOCHS} are needed to judge the fit"
    curve, name = (val_loss, "val loss") if not np.any(np.isnan(val_loss)) else (train_loss, "train loss")
    if not np.any(np.isnan(curve)):
        total_drop = curve[0] - curve.min()
        recent_drop = curve[-1 - VAL_RISE_EPOCHS] - curve[-1]
        if curve[-1] <= curve.min() and total_drop > 0 and recent_drop >= STILL_IMPROVING * total_drop:
            return "too few epochs", None, (
                f"{name} is still falling at the last epoch ({curve[-1 - VAL_RISE_EPOCHS]:.4f} at epoch "
                f"{epochs[-1 - VAL_RISE_EPOCHS]} to {curve[-1]:.4f} at epoch {epochs[-1]}, "
                f"{100 * recent_drop / total_drop:.0f}% of its whole drop): train longer")
    chance = 1.0 / num_classes if num_classes else 0.0
    floor = chance + UNDERFIT_FRACTION * (1.0 - chance)
    why = []
    if not np.isnan(train_acc[-1]) and train_acc[-1] < floor:
        why.append(f"final train accuracy {train_acc[-1]:.3f} is below {floor:.3f} "
                   f"({UNDERFIT_FRACTION:.0%} of the way from chance {chance:.3f} to 1)")
    if not np.isnan(train_loss[0]) and not np.isnan(train_loss[-1]) and train_loss[0] > 0:
        drop = (train_loss[0] - train_loss[-1]) / train_loss[0]
        if drop < MIN_LOSS_DROP:
            why.append(f"train loss fell only {100 * drop:.0f}% ({train_loss[0]:.4f} to {train_loss[-1]:.4f}) "
                       f"in {len(epochs)} epochs")
    if why:
        return "underfitting", None, " and ".join(why) + ": unfreeze more layers, raise the learning rate or train longer"
    return None, None, ""

"""What an INT8 search leaves behind: its recipe (calibration method, percentile, nodes kept in float) as
JSON, read back from that file or from an INT8 ONNX's card by `--int8-recipe`, and the Markdown report of
the search and the final parity (`int8_report.md`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from tledge.errors import TledgeError
from tledge.exporting.int8_search import SearchResult, candidate_label

RECIPE_FILE = "int8_recipe.json"


def load_recipe(path: str | Path) -> dict:
    """A recipe from a JSON file, or from the card of an INT8 ONNX written by tledge (search or not)."""
    path = Path(path)
    if not path.is_file():
        raise TledgeError(f"--int8-recipe: file not found: {path}")
    if path.suffix == ".onnx":
        from tledge.card import card_from_onnx

        facts = card_from_onnx(path).extra.get("int8")
        if not facts:
            raise TledgeError(f"--int8-recipe: {path} has no INT8 facts in its card")
        search = facts.get("search") or {}
        data = {"method": search.get("method", facts.get("method")),
                "percentile": search.get("percentile", facts.get("percentile")),
                "nodes_to_exclude": search.get("nodes_excluded", facts.get("nodes_excluded", []))}
    else:
        try:
            data = json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise TledgeError(f"--int8-recipe: {path} is not a JSON recipe ({exc})") from None
    from tledge.exporting.int8 import CALIB_METHODS

    method = data.get("method")
    if method not in CALIB_METHODS:
        raise TledgeError(f"--int8-recipe {path}: method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    nodes = data.get("nodes_to_exclude") or []
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise TledgeError(f"--int8-recipe {path}: nodes_to_exclude must be a list of node names")
    pct = data.get("percentile")
    return {"method": method, "percentile": float(pct) if (pct is not None and method == "percentile") else None,
            "nodes_to_exclude": nodes, "source": str(path)}


# ----------------------------------------------------------------------------------------- report
def write_report(path: str | Path, search: SearchResult | None, parity_rows: Sequence, extra: dict | None = None) -> Path:
    """The Markdown INT8 report: search steps (val), sensitivity, chosen recipe, final parity on test."""
    from tledge.card import atomic_write_text
    from tledge.table import format_table

    lines = ["# INT8 report", ""]
    extra = extra or {}
    if extra.get("recipe"):
        r = extra["recipe"]
        lines += [f"Recipe reused from `{r['source']}` (no search): {candidate_label(r['method'], r['percentile'])}, "
                  f"{len(r['nodes_to_exclude'])} node(s) kept in float.", ""]
    if extra.get("qat"):
        q = extra["qat"]
        lines += ["## Quantization-aware fine-tuning", "",
                  format_table([{k: v for k, v in q.items() if not isinstance(v, (list, dict))}]), ""]
    if search is not None:
        lines += ["## Search (val split)", "",
                  f"Budget {search.budget:g} pt below FP32 on {search.val_images} val images from {search.val_source} "
                  f"(search mode: {search.mode}). FP32 ONNX: {search.fp32_val_acc:.2f}% val. A step fits when its val "
                  "Δacc (INT8 − FP32; negative is worse) is no worse than −budget; the 95% interval shows what this many val images can resolve. "
                  "Latency is not part of the decision."
                  + ("" if search.source_val_acc is None else
                     f" The fine-tuned model that is quantized: {search.source_val_acc:.2f}% val in FP32."), "",
                  format_table([{"step": s.stage, "what": s.label, "val acc %": round(s.val_acc, 2),
                                 "Δacc pt": f"{-s.val_drop:+.2f}", "Δacc 95% pt": f"{-s.drop_high:+.2f} to {-s.drop_low:+.2f}",
                                 "agreement %": round(s.agreement, 2), "KL": float(f"{s.kl:.3g}"),
                                 "seconds": round(s.seconds, 1), "fits": "yes" if s.fits else "no"}
                                for s in search.steps]), "",
                  "Calibration passes (s): " + (", ".join(f"{k} {v}" for k, v in search.calibration_seconds.items())
                                                or "none"), "",
                  f"**Result**: {'fits' if search.fits else 'does not fit'} — {search.stop_reason}. "
                  f"Chosen: {search.chosen.label}; calibration {candidate_label(search.method, search.percentile)}; "
                  f"groups in float: {', '.join(search.chosen.groups_excluded) or 'none'} "
                  f"({len(search.nodes_excluded)} nodes).", ""]
        if search.sensitivity:
            lines += ["### Layer-group sensitivity (each group quantized alone, the rest in float)", "",
                      format_table([{"group": s["group"], "nodes": s["nodes"], "MMACs": round(s["macs"] / 1e6, 2),
                                     "KL alone": float(f"{s['kl']:.3g}"), "agreement alone %": round(s["agreement"], 2)}
                                    for s in search.sensitivity]), ""]
    rows = [r for r in parity_rows if r.parity is not None]
    if rows:
        lines += ["## Final parity (test split)", "",
                  format_table([{"artifact": r.format, "file": r.path.name, "acc %": round(r.parity.acc_artifact, 2),
                                 "FP32 acc %": round(r.parity.acc_reference, 2), "N": r.parity.images,
                                 "Δacc pt (95%)": f"{r.parity.acc_delta:+.2f} ({r.parity.acc_delta_ci[0]:+.2f} to "
                                                  f"{r.parity.acc_delta_ci[1]:+.2f})",
                                 "agreement %": round(r.parity.agreement, 2), "status": r.status} for r in rows]), ""]
    if extra.get("latency"):
        lines += ["Batch-1 latency on this CPU, interleaved rounds (ms): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in extra["latency"].items()), ""]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines))
    return path

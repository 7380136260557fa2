"""How many parity images a verdict needs: the smallest accuracy drop N images can resolve, by agreement.

Pure arithmetic on tledge.stats (no model): for each number of images and each top-1 agreement between
the artifact and PyTorch (the discordant images split evenly between gains and losses, i.e. no true
drop), the 95% half-width of the paired accuracy difference; and the images needed before a 1.0-point and
a 0.3-point gate can say "within" at that agreement.

    .venv/bin/python benchmarks/parity_power.py     # < 10 s
Writes benchmarks/results/parity_power.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tledge import stats
from tledge.table import format_table

IMAGES = (24, 100, 240, 874, 2158, 5000, 20000)
AGREEMENTS = (100.0, 99.5, 99.0, 97.5, 95.0)


def needed(agreement: float, budget_pt: float) -> int | None:
    """Images before an artifact with this agreement and no true drop is shown within `budget_pt`."""
    rate = (100.0 - agreement) / 100.0

    def outcome_at(m: float) -> str:
        low, high = stats.paired_delta_interval(rate * m / 2, rate * m / 2, m)
        return stats.at_most((-100.0 * high, -100.0 * low), budget_pt)

    return stats.images_needed(outcome_at, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "parity_power.json")
    args = parser.parse_args()
    rows = []
    for agreement in AGREEMENTS:
        row = {"agreement %": agreement}
        for n in IMAGES:
            discordant = n * (100.0 - agreement) / 100.0
            row[f"N={n}"] = round(100.0 * stats.resolvable_drop(n, discordant), 2)
        row["images for 1.0 pt"] = needed(agreement, 1.0)
        row["images for 0.3 pt"] = needed(agreement, 0.3)
        rows.append(row)
    print("smallest resolvable accuracy drop (pt, 95%), no true drop, by agreement and number of images")
    print(format_table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "parity_power",
        "what": "95% half-width of the paired accuracy difference (Tango score interval) in points, when the "
                "discordant images split evenly; and images needed for a gate to say 'within' at that agreement",
        "interval": "Tango asymptotic score interval for paired proportions (tledge.stats)",
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Regenerate the option tables of docs/reference.md from the options objects (run from anywhere):
python scripts/readme_options.py"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tledge, not an installed one

from tledge.cli.option_tables import REFERENCE, update_tables  # noqa: E402

if __name__ == "__main__":
    reference = ROOT / REFERENCE
    reference.write_text(update_tables(reference.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {reference}")

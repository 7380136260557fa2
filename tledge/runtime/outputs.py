"""Where predictions go: JSONL (one record per item), CSV (folders), a printed table, the summary JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tledge.runtime.predict import Sink
from tledge.runtime.sources import Item
from tledge.table import format_table

TABLE_ROWS_SHOWN = 50


class StreamedFile:
    """A text file written line by line as the run goes; a failed write (disk full, I/O error) is a one-line
    WriteError that says how many lines were kept, and closing after it is quiet."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines = 0
        self.failed = False
        self._call(lambda: self.path.parent.mkdir(parents=True, exist_ok=True))
        self.file = self._call(lambda: self.path.open("w", newline="", encoding="utf-8"))

    def _call(self, action):
        try:
            return action()
        except OSError as exc:
            from tledge.atomic import write_error

            self.failed = True
            error = write_error(self.path, exc, f"at most the {self.lines} line(s) written before it are in the file")
            if error is None:
                raise
            raise error from None

    def write(self, text: str) -> None:
        self._call(lambda: self.file.write(text))
        self.lines += text.count("\n")

    def close(self) -> None:
        if self.file.closed:
            return
        if self.failed:
            try:
                self.file.close()
            except OSError:
                pass
            return
        self._call(self.file.close)


class JsonlSink(Sink):
    """One JSON object per line: index, source, label, prob, topk [{label, index, prob}], latency_ms, batch."""

    def __init__(self, path: str | Path):
        self.file = StreamedFile(path)

    def write(self, record: dict, item: Item, status: dict) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()


def csv_header(topk: int) -> list[str]:
    """path, top1, prob1, top2, prob2, …, latency_ms."""
    columns = ["path"]
    for k in range(1, topk + 1):
        columns += [f"top{k}", f"prob{k}"]
    return columns + ["latency_ms"]


class CsvSink(Sink):
    def __init__(self, path: str | Path, topk: int):
        self.topk = topk
        self.file = StreamedFile(path)
        self.writer = csv.writer(self.file)
        self.writer.writerow(csv_header(topk))

    def write(self, record: dict, item: Item, status: dict) -> None:
        row = [record["source"]]
        top = record["topk"]
        for k in range(self.topk):
            row += [top[k]["label"], f"{top[k]['prob']:.6f}"] if k < len(top) else ["", ""]
        self.writer.writerow(row + [f"{record['latency_ms']:.3f}"])

    def close(self) -> None:
        self.file.close()


class TableSink(Sink):
    """Collects rows to print once the run ends (the first TABLE_ROWS_SHOWN; the CSV/JSONL have all)."""

    def __init__(self, limit: int = TABLE_ROWS_SHOWN):
        self.limit = limit
        self.records: list[dict] = []
        self.total = 0

    def write(self, record: dict, item: Item, status: dict) -> None:
        self.total += 1
        if len(self.records) < self.limit:
            self.records.append(record)

    def render(self) -> str:
        if not self.records:
            return ""
        if self.total == 1:  # one image: its top-k with probabilities
            record = self.records[0]
            rows = [{"rank": i + 1, "label": t["label"], "prob": f"{t['prob'] * 100:.2f}%"}
                    for i, t in enumerate(record["topk"])]
            return f"{record['source']}\n" + format_table(rows)
        rows = []
        for record in self.records:
            others = ", ".join(f"{t['label']} {t['prob']:.2f}" for t in record["topk"][1:])
            rows.append({"source": record["source"], "top1": record["label"], "prob": f"{record['prob']:.3f}",
                         "next": others or None, "ms": f"{record['latency_ms']:.1f}"})
        text = format_table(rows)
        if self.total > len(self.records):
            text += f"\n… {self.total - len(self.records)} more rows (use --csv or --json for all)"
        return text

    def close(self) -> None:
        pass


class ProgressSink(Sink):
    """A progress bar over a folder or glob of images (on a terminal only; see tledge.progress)."""

    def __init__(self, total: int, stream=None):
        from tledge.progress import progress_bar

        self.bar = progress_bar(total, "predict", unit="img", stream=stream)

    def write(self, record: dict, item: Item, status: dict) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def write_summary_json(summary: dict, path: str | Path) -> Path:
    from tledge.atomic import write_json

    return write_json(path, summary)

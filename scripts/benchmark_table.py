"""A paper's comparison table with our rows beside the published ones:
``python scripts/benchmark_table.py results/*.json --paper style2talker [--dataset mead] [--csv FILE]``.

Each JSON is one ``scripts/benchmark.py`` output and becomes one row, named by its ``config.method``
(``method=`` on the benchmark command line) or else the file's stem. Columns are the paper's, in
its order (``stylization/metrics/published.py``); a metric a run did not compute prints as ``–``.
Prints a markdown table (the paper's rows first, marked *(paper)*, then ours) and the same table
as CSV; ``--csv FILE`` writes the CSV there (atomically) instead of printing it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_rows(paths: list[str], keys: list[str]) -> list[tuple[str, list[float | None]]]:
    """[(row name, values in ``keys`` order)] from benchmark JSON files (a bad file: DataError)."""
    from stylization.errors import DataError

    rows = []
    for path in paths:
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"not a readable benchmark result ({type(exc).__name__}: {exc})", path) from None
        if not isinstance(result, dict) or not isinstance(result.get("aggregate"), dict):
            raise DataError("no 'aggregate' object: not a scripts/benchmark.py result", path)
        name = (result.get("config") or {}).get("method") or Path(path).stem
        aggregate = result["aggregate"]
        rows.append((str(name), [aggregate.get(k) for k in keys]))
    return rows


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(paper: str, dataset: str, paths: list[str]) -> tuple[str, str]:
    """(markdown, csv) of ``paper``'s table on ``dataset`` with one row per result file."""
    from stylization.errors import ConfigError
    from stylization.metrics.published import TABLES

    if paper not in TABLES:
        raise ConfigError(f"unknown paper {paper!r}; known: {sorted(TABLES)}")
    table = TABLES[paper]
    if dataset not in table.rows:
        raise ConfigError(f"{table.title} has no {dataset!r} block; it has {sorted(table.rows)}")
    headers = [h for h, _ in table.columns]
    keys = [k for _, k in table.columns]
    arrows = ["↓" if k in table.lower_is_better else "↑" for k in keys]
    published = [(f"{name} (paper)", list(values)) for name, values in table.rows[dataset]]
    ours = load_rows(paths, keys)
    lines = [f"{table.title}, {dataset.upper()}", "",
             "| method | " + " | ".join(f"{h} {a}" for h, a in zip(headers, arrows)) + " |",
             "|---|" + "---|" * len(keys)]
    for name, values in published + ours:
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in values) + " |")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "source", *keys])
    for source, rows in (("paper", published), ("ours", ours)):
        for name, values in rows:
            writer.writerow([name.removesuffix(" (paper)"), source, *["" if v is None else v for v in values]])
    return "\n".join(lines) + "\n", buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="scripts/benchmark.py JSON files, one row each")
    parser.add_argument("--paper", default="style2talker", help="style2talker | styletalk | saas")
    parser.add_argument("--dataset", default="mead", help="the paper's block: mead | hdtf")
    parser.add_argument("--csv", default=None, help="write the CSV here instead of printing it")
    args = parser.parse_args()

    from stylization.cli import run_cli
    from stylization.data.corpus import write_text_atomic

    def go():
        markdown, table_csv = render(args.paper, args.dataset, args.results)
        print(markdown)
        if args.csv:
            write_text_atomic(args.csv, table_csv)
        else:
            print(table_csv, end="")

    run_cli(go)


if __name__ == "__main__":
    main()

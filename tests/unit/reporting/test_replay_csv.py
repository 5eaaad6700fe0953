"""The CSV files ``ipmg audit replay`` writes open in a spreadsheet as text, never formulas."""

from __future__ import annotations

import csv
from pathlib import Path

from ipmg_reporting.replay import _write_csv


def test_text_that_a_spreadsheet_would_run_is_written_as_text(tmp_path: Path) -> None:
    path = tmp_path / "tracker.csv"
    rows = [
        {"title": '=HYPERLINK("http://example.org/x","click")', "number": 1},
        {"title": "+1+1", "number": 2},
        {"title": "@SUM(A1:A2)", "number": 3},
        {"title": "-2+3", "number": 4},
        {"title": "Independent WDDs", "number": 5},
    ]
    _write_csv(path, rows)
    with path.open(newline="", encoding="utf-8") as written:
        read = list(csv.DictReader(written))
    assert [row["title"] for row in read] == [
        '\'=HYPERLINK("http://example.org/x","click")',
        "'+1+1",
        "'@SUM(A1:A2)",
        "'-2+3",
        "Independent WDDs",
    ]
    assert [row["number"] for row in read] == ["1", "2", "3", "4", "5"]

"""Rendering query results as json, csv and an aligned text table."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from hotspots.output import FORMATS, render

ROWS = [
    {"cell": "88194e0d37fffff", "count": 12, "cash_gbp": 1234.5, "operation": None},
    {"cell": "x", "count": 3, "cash_gbp": 0.0, "operation": "Op Raptor"},
]
SUMMARY = {"from": "2023-01-01", "arrests": 440, "charge_rate": 0.6932, "note": "a,b"}


def test_formats():
    assert FORMATS == ("json", "csv", "table")


def test_json_list_and_dict():
    assert json.loads(render(ROWS, "json")) == ROWS
    assert json.loads(render(SUMMARY, "json")) == SUMMARY
    assert json.loads(render([{"week": date(2023, 1, 2)}], "json")) == [{"week": "2023-01-02"}]


def test_csv_list():
    text = render(ROWS, "csv")
    lines = text.split("\n")
    assert lines[0] == "cell,count,cash_gbp,operation"
    assert lines[1:] == ["88194e0d37fffff,12,1234.5,", "x,3,0.0,Op Raptor"]
    assert not text.endswith("\n")


def test_csv_dict_is_one_row_and_quotes_commas():
    text = render(SUMMARY, "csv")
    assert list(csv.DictReader(io.StringIO(text))) == [
        {"from": "2023-01-01", "arrests": "440", "charge_rate": "0.6932", "note": "a,b"}]
    assert '"a,b"' in text


def test_table_list():
    lines = render(ROWS, "table").split("\n")
    assert len(lines) == 4
    assert lines[0].split() == ["cell", "count", "cash_gbp", "operation"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    # Columns line up: every line has the same width, given by the widest value.
    widths = [len(d) for d in lines[1].split("  ")]
    assert widths == [15, 5, 8, 9]
    assert all(len(line) == len(lines[1]) for line in lines)
    # Numbers are right-aligned and floats get thousands separators and 2 decimals.
    assert lines[2].startswith("88194e0d37fffff     12  1,234.50")
    assert lines[3].startswith("x                    3      0.00  Op Raptor")
    assert lines[2].rstrip().endswith("1,234.50")  # None renders empty


def test_table_dict():
    lines = render(SUMMARY, "table").split("\n")
    assert len(lines) == 3
    assert lines[0].split() == list(SUMMARY)
    assert lines[2].split() == ["2023-01-01", "440", "0.69", "a,b"]


@pytest.mark.parametrize(("fmt", "expected"), [("json", "[]"), ("csv", ""),
                                               ("table", "(no rows)")])
def test_empty_list(fmt, expected):
    assert render([], fmt) == expected

"""Landing tables: the worker's envelopes handed to ClickHouse as they came, parsed there.

Decoding every rollup row and event in Python, then encoding them again as Native columns
(clickhouse-connect), was about half of the sink's CPU (docs/bench.md, "Fourth pass").
ClickHouse parses the same bytes in C++: each envelope goes into a Null-engine landing
table, and a materialized view turns it into rows of the real table. The same SQL runs
on chDB and on a server.

    rollups.v2 envelope  [[name, seq, *measures], ...]   -> rollups_landing (one row each)
    accepted.v1 (v2 envelopes) lines of hotspots.accepted -> events_landing  (one row each)

Only the worker writes these topics. An envelope ClickHouse refuses is decoded in Python
instead (sinks.sink), so a good one still becomes rows and a bad one a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from hotspots import accepted
from hotspots.contract import MEASURES

ROLLUPS_LANDING = "rollups_landing"
EVENTS_LANDING = "events_landing"

_UINTS = ", ".join("UInt64" for _ in MEASURES)
_ROLLUP_MEASURES = ", ".join(f"r.{i} AS {m}" for i, m in enumerate(MEASURES, 3))

# A line of the accepted topic, as hotspots.accepted writes it: a JSON array of FIELDS, then
# a tab and the event's bytes (or, for bytes with a newline, the text as one more element).
_EVENT_TYPES = {"lat": "Float64", "lon": "Float64", "cell8": "UInt64", "cell7": "UInt64",
                "cell6": "UInt64", **dict.fromkeys(MEASURES, "UInt64")}
_STORED = accepted.FIELDS[:-1]  # all but src, the source position
_EVENT_TUPLE = ", ".join(_EVENT_TYPES.get(name, "String") for name in _STORED)


def _event_column(i: int, name: str) -> str:
    if name == "occurred_at":  # always UTC, ISO 8601 (streams.rollup.accepted_row)
        return f"parseDateTime64BestEffort(v.{i}, 3, 'UTC') AS {name}"
    if name in ("week_start", "month_start"):
        return f"toDate(v.{i}) AS {name}"
    return f"v.{i} AS {name}"


_EVENT_COLUMNS = ",\n  ".join(_event_column(i, name) for i, name in enumerate(_STORED, 1))

SCHEMA: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {{db}}.{ROLLUPS_LANDING} (
  rows Array(Tuple(String, UInt64, {_UINTS}))
) ENGINE = Null""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.rollups_from_landing TO {{db}}.rollups AS
SELECT p[1] AS period, toUInt8(p[2]) AS res, p[5] AS kind, toDate(p[4]) AS period_start,
  toUInt64(p[3]) AS cell, {_ROLLUP_MEASURES}, r.2 AS seq
FROM {{db}}.{ROLLUPS_LANDING} ARRAY JOIN rows AS r ARRAY JOIN [splitByChar('|', r.1)] AS p""",
    f"""CREATE TABLE IF NOT EXISTS {{db}}.{EVENTS_LANDING} (line String) ENGINE = Null""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.events_from_landing TO {{db}}.events AS
SELECT {_EVENT_COLUMNS},
  if(tab = 0, JSONExtractString(line, -1), substring(line, tab + 1)) AS payload
FROM {{db}}.{EVENTS_LANDING}
ARRAY JOIN [position(line, '\\t')] AS tab
ARRAY JOIN [JSONExtract(if(tab = 0, line, substring(line, 1, tab - 1)), 'Tuple({_EVENT_TUPLE})')] AS v""",
)


def _rollups_fit(value: bytes) -> bool:
    return value.startswith(b"[[")


def _rollups_text(value: bytes) -> bytes:
    return b"[" + value + b"]"  # one JSONCompactEachRow row: [rows]


def _rollup_rows(value: bytes) -> int:
    return value.count(b"],[") + 1  # names and numbers: "],[" only between rows


def _events_fit(value: bytes) -> bool:
    return value.startswith(accepted.MAGIC) and len(value) > len(accepted.MAGIC)  # not v1


def _events_text(value: bytes) -> bytes:
    return value[len(accepted.MAGIC):]  # LineAsString: one row per line


def _event_rows(value: bytes) -> int:
    return value.count(b"\n")  # the magic's newline, then one before each line but the first


class Landing(NamedTuple):
    """How one topic's envelopes land: the landing table, its one column and input format;
    whether an envelope has the shape it takes (if not, the sink decodes it in Python), the
    envelope as that format's text, and the number of rows it holds."""

    table: str
    column: str
    fmt: str
    fits: Callable[[bytes], bool]
    text: Callable[[bytes], bytes]
    rows: Callable[[bytes], int]


ROLLUPS = Landing(ROLLUPS_LANDING, "rows", "JSONCompactEachRow", _rollups_fit, _rollups_text,
                  _rollup_rows)
EVENTS = Landing(EVENTS_LANDING, "line", "LineAsString", _events_fit, _events_text, _event_rows)

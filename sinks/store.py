"""The ClickHouse store: embedded chDB by default, a ClickHouse server when a URL is set.

The same SQL runs on both through clickhouse-connect. Tables are ReplacingMergeTree so
that a redelivered batch leaves every answer unchanged; queries read with FINAL.
chDB lets one process open one store path, so the sink and the query API share a Store.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import clickhouse_connect

from hotspots.contract import MEASURES
from hotspots.settings import SinkSettings
from sinks import landing

_MEASURE_COLS = ",\n  ".join(f"{m} UInt64" for m in MEASURES)

SCHEMA: tuple[str, ...] = (
    "CREATE DATABASE IF NOT EXISTS {db}",
    # One row per (period, res, kind, period_start, cell); the highest seq is the current state.
    f"""CREATE TABLE IF NOT EXISTS {{db}}.rollups (
  period LowCardinality(String),
  res UInt8,
  kind LowCardinality(String),
  period_start Date,
  cell UInt64,
  {_MEASURE_COLS},
  seq UInt64,
  updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(seq)
ORDER BY (period, res, kind, period_start, cell)""",
    f"""CREATE TABLE IF NOT EXISTS {{db}}.events (
  event_id String,
  kind LowCardinality(String),
  occurred_at DateTime64(3, 'UTC'),
  time_precision LowCardinality(String),
  week_start Date,
  month_start Date,
  lat Float64,
  lon Float64,
  force LowCardinality(String),
  operation String,
  cell8 UInt64,
  cell7 UInt64,
  cell6 UInt64,
  {_MEASURE_COLS},
  payload String,
  ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (kind, week_start, cell8, event_id)""",
    """CREATE TABLE IF NOT EXISTS {db}.dead_letters (
  reason LowCardinality(String),
  source String,
  detail String,
  raw String,
  received_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (reason, source)""",
    # Emerging hot spot classes per cell and week (sinks.ehsa); a recomputed week replaces its row.
    """CREATE TABLE IF NOT EXISTS {db}.ehsa_classes (
  res UInt8,
  kind LowCardinality(String),
  cell UInt64,
  week_start Date,
  class LowCardinality(String),
  computed_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (res, kind, cell, week_start)""",
    # A cell's class change in a week: at most one row per (res, kind, cell, week_start).
    """CREATE TABLE IF NOT EXISTS {db}.ehsa_transitions (
  res UInt8,
  kind LowCardinality(String),
  cell UInt64,
  week_start Date,
  from_class LowCardinality(String),
  to_class LowCardinality(String),
  computed_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (res, kind, cell, week_start)""",
    # Spike alerts (streams.alerts): alert_id is deterministic, so an alert re-raised after a
    # crash replaces itself; of the two, the one first seen earliest stays (the version falls
    # as first_seen grows).
    """CREATE TABLE IF NOT EXISTS {db}.alerts (
  alert_id String,
  area_type LowCardinality(String),
  area String,
  res UInt8,
  kind LowCardinality(String),
  period LowCardinality(String),
  period_start Date,
  observed UInt32,
  expected Float64,
  p_value Float64,
  method LowCardinality(String),
  first_seen DateTime64(3, 'UTC'),
  triggering_event_id String,
  stored_at DateTime64(3, 'UTC') DEFAULT now64(3),
  earliest UInt64 MATERIALIZED 18446744073709551615 - toUInt64(toUnixTimestamp64Milli(first_seen))
) ENGINE = ReplacingMergeTree(earliest)
ORDER BY alert_id""",
    *landing.SCHEMA,  # after rollups and events: its views write into them
)


def rowbinary_string(value: bytes) -> bytes:
    """A String in ClickHouse's RowBinary format: its length (unsigned LEB128), then its bytes."""
    size, head = len(value), bytearray()
    while size >= 0x80:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + value


class Store:
    """A thread-safe handle on the store (the sink thread and the API threads share it)."""

    def __init__(self, settings: SinkSettings) -> None:
        self.database = settings.database
        if settings.clickhouse_url:
            self.client = clickhouse_connect.get_client(dsn=settings.clickhouse_url)
            self.embedded = False
        else:
            settings.chdb_path.parent.mkdir(parents=True, exist_ok=True)
            self.client = clickhouse_connect.get_client(interface="chdb",
                                                        path=str(settings.chdb_path))
            self.embedded = True
        self._lock = threading.Lock()
        for statement in SCHEMA:
            self.command(statement.format(db=self.database))

    def command(self, sql: str, settings: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.client.command(sql, settings=settings)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self.client.query(sql.format(db=self.database), parameters=params or {})
        # Every row has every column: zip's strict check made the dicts of a 16k-row answer
        # 1.5x slower to build (docs/bench.md, "Dashboard queries").
        columns = result.column_names
        return [dict(zip(columns, row, strict=False)) for row in result.result_rows]

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        with self._lock:
            self.client.insert(f"{self.database}.{table}", rows, column_names=list(columns))

    def insert_raw(self, table: str, column: str | Sequence[str], body: bytes, fmt: str) -> None:
        """Insert ``body``, in ClickHouse input format ``fmt``, into a table's column(s)."""
        columns = [column] if isinstance(column, str) else list(column)
        with self._lock:
            self.client.raw_insert(f"{self.database}.{table}", columns, body, fmt=fmt)

    def close(self) -> None:
        with self._lock:
            self.client.close()

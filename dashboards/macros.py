"""Expand a panel's SQL the way Grafana and the ClickHouse data source would, for tests.

Grafana interpolates dashboard variables (``${kind}``, ``$res``) first; the plugin
(grafana-clickhouse-datasource v4, pkg/macros/macros.go) then expands its macros:

- ``$__timeFilter(col)``    -> ``col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)``
- ``$__timeFilter_ms(col)`` -> the same with ``fromUnixTimestamp64Milli(<ms>)``
- ``$__dateFilter(col)``    -> ``col >= toDate('YYYY-MM-DD') AND col <= toDate('YYYY-MM-DD')``
- ``$__fromTime``/``$__toTime`` -> ``toDateTime(<epoch seconds>)`` (``_ms``: milliseconds)
- ``$__timeInterval(col)``  -> ``toStartOfInterval(toDateTime(col), INTERVAL <s> second)``
- ``$__interval_s``         -> the panel interval in whole seconds (at least 1)

Seconds are Go's ``time.Unix()`` (floor) and dates are formatted in UTC, as the plugin's
backend sees the range. Panels name their tables ``hotspots.<table>``; ``database`` swaps
that prefix (and a quoted ``'hotspots'``) for another database, e.g. the tests' store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

DATABASE = "hotspots"

_FUNC = re.compile(r"\$__(timeFilter_ms|timeFilter|dateFilter|timeInterval_ms|timeInterval)"
                   r"\(\s*([^()]*?)\s*\)")
_TIME = re.compile(r"\$__(fromTime|toTime)(_ms)?\b")
_INTERVAL = re.compile(r"\$__interval_s\b")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(?!__)(\w+)\b")


def _seconds(t: datetime) -> int:
    return math.floor(t.timestamp())


def _datetime(t: datetime) -> str:
    return f"toDateTime({_seconds(t)})"


def _datetime64(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({math.floor(t.timestamp() * 1000)})"


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"


def interpolate(sql: str, variables: Mapping[str, object]) -> str:
    """Grafana's template variables; an unknown variable is an error, not left in the SQL."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"dashboard variable {name!r} has no value")
        return str(variables[name])

    return _VAR.sub(value, sql)


def expand(sql: str, start: datetime, end: datetime, variables: Mapping[str, object] | None = None,
           interval_s: int = 60, database: str = DATABASE) -> str:
    """The SQL the ClickHouse server receives for this range, variables and database."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the time range must be timezone-aware")
    sql = interpolate(sql, variables or {})
    interval = max(int(interval_s), 1)

    def func(m: re.Match[str]) -> str:
        name, col = m.group(1), m.group(2)
        if name == "timeFilter":
            return f"{col} >= {_datetime(start)} AND {col} <= {_datetime(end)}"
        if name == "timeFilter_ms":
            return f"{col} >= {_datetime64(start)} AND {col} <= {_datetime64(end)}"
        if name == "dateFilter":
            return f"{col} >= {_date(start)} AND {col} <= {_date(end)}"
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({col}), INTERVAL {interval} second)"
        return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {interval * 1000} millisecond)"

    def time(m: re.Match[str]) -> str:
        t = start if m.group(1) == "fromTime" else end
        return _datetime64(t) if m.group(2) else _datetime(t)

    sql = _FUNC.sub(func, sql)
    sql = _TIME.sub(time, sql)
    sql = _INTERVAL.sub(str(interval), sql)
    if database != DATABASE:
        sql = re.sub(rf"\b{DATABASE}\.", f"{database}.", sql)
        sql = sql.replace(f"'{DATABASE}'", f"'{database}'")
    return sql

"""Change over time, k-ring smoothing and drill-down, for weeks and months at res 6-8.

`change` and `smoothed` read the rollups only. `drill` is the one query here that reads raw
event rows: it *is* the list of events, and is bounded by one cell and one period.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import h3
from h3.api import basic_int as h3i

from hotspots.contract import MEASURES
from hotspots.geo import RESOLUTIONS, to_int, to_str
from sinks.gistar import MAX_K, study_area
from sinks.queries import _LABEL, QueryError, _present, check_args
from sinks.store import Store

TREND_PERIODS = ("week", "month")
MODES = ("pop", "4v4")
MAX_LIMIT = 10_000
# Above this many events in a cell the exact binomial sum is swapped for its normal limit.
EXACT_UP_TO = 1000


def _check(period: str, start: date, res: int | None, kind: str | None, limit: int | None) -> None:
    check_args(TREND_PERIODS, period, start, res, kind)
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")


def _previous(start: date, period: str) -> date:
    return start - timedelta(weeks=1) if period == "week" else (start - timedelta(days=1)).replace(day=1)


def binomial_p(current: int, previous: int) -> float:
    """Two-sided p of "same Poisson rate in both windows". Given n = current + previous, equal
    rates over equal-length windows make current ~ Binomial(n, 1/2) (the conditional test for
    two Poisson counts), and the exact two-sided p is 2·P(X ≥ max), capped at 1. Months of
    28-31 days are treated as equal length. Past EXACT_UP_TO events: the normal approximation
    with continuity correction."""
    n, top = current + previous, max(current, previous)
    if n == 0:
        return 1.0
    if n > EXACT_UP_TO:
        return min(1.0, math.erfc(max(0.0, abs(current - previous) - 1) / math.sqrt(2 * n)))
    tail = sum(math.comb(n, i) for i in range(top, n + 1))
    return min(1.0, 2 * tail / 2 ** n)


def change(store: Store, period: str, start: date, kind: str, res: int = 8, mode: str = "pop",
           limit: int | None = None) -> list[dict[str, Any]]:
    """Per cell, the count in the current window against the previous one, biggest rise first.
    "pop": the period starting ``start`` against the one before. "4v4" (weeks): the 4 weeks
    whose last starts ``start`` against the 4 weeks before those."""
    _check(period, start, res, kind, limit)
    if mode not in MODES:
        raise QueryError(f"mode {mode!r} unknown; choose one of {MODES}")
    if mode == "4v4" and period != "week":
        raise QueryError("mode '4v4' compares weeks; use period 'week'")
    if mode == "pop":
        current_from, first = start, _previous(start, period)
    else:
        current_from, first = start - timedelta(weeks=3), start - timedelta(weeks=7)
    rows = store.query(
        """SELECT cell, sumIf(count, period_start >= %(cur)s) AS cur,
                  sumIf(count, period_start < %(cur)s) AS prev
           FROM {db}.rollups FINAL
           WHERE period = %(period)s AND res = %(res)s AND kind = %(kind)s
             AND period_start BETWEEN %(first)s AND %(start)s
           GROUP BY cell HAVING cur + prev > 0""",
        {"cur": current_from, "first": first, "start": start, "period": period, "res": res,
         "kind": kind})
    out: list[dict[str, Any]] = []
    for r in rows:
        cur, prev = int(r["cur"]), int(r["prev"])
        out.append({"cell": to_str(r["cell"]), "current": cur, "previous": prev,
                    "delta": cur - prev, "ratio": round(cur / prev, 4) if prev else None,
                    "p": binomial_p(cur, prev)})
    out.sort(key=lambda r: (-r["delta"], r["cell"]))
    return out[:limit] if limit else out


def smoothed(store: Store, period: str, start: date, kind: str, res: int = 8, k: int = 1,
             limit: int | None = None) -> list[dict[str, Any]]:
    """Uniform-kernel k-ring smoothing: for each cell with events in the period, and each cell
    within k of one, the mean count over its k-ring, itself included (a pentagon's ring is
    smaller and the mean is over the cells it has). Highest first."""
    _check(period, start, res, kind, limit)
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}")
    rows = store.query(
        """SELECT cell, count FROM {db}.rollups FINAL
           WHERE period = %(period)s AND res = %(res)s AND kind = %(kind)s
             AND period_start = %(start)s AND count > 0""",
        {"period": period, "res": res, "kind": kind, "start": start})
    counts = {int(r["cell"]): int(r["count"]) for r in rows}
    out: list[dict[str, Any]] = []
    for cell in study_area(counts, k):
        ring = h3i.grid_disk(cell, k)
        out.append({"cell": to_str(cell), "count": counts.get(cell, 0),
                    "smoothed": sum(counts.get(int(c), 0) for c in ring) / len(ring)})
    out.sort(key=lambda r: (-r["smoothed"], -r["count"], r["cell"]))
    return out[:limit] if limit else out


def _utc(at: datetime) -> str:
    """chDB hands back DateTime64(3, 'UTC') naive; a server may attach the zone."""
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).isoformat()


def drill(store: Store, cell: str, period: str, start: date, kind: str | None = None,
          limit: int = 100) -> list[dict[str, Any]]:
    """The events behind one cell (res 6, 7 or 8) in one week or month, earliest first. A week
    holds only events known to the day: month-precision ones feed monthly rollups only.
    ``measures`` has the event's non-zero measures besides count (always 1 here)."""
    _check(period, start, None, kind, limit)
    try:
        cell_id = to_int(cell)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    res = h3.get_resolution(cell)
    if res not in RESOLUTIONS:
        raise QueryError(f"{cell} is a resolution-{res} cell; cells of "
                         f"{sorted(RESOLUTIONS)} are kept")
    # res is one of 6-8, so the column names below are fixed, not user text.
    where = ("week_start = %(start)s AND time_precision != 'month'" if period == "week"
             else "month_start = %(start)s")
    rows = store.query(
        f"""SELECT event_id, kind, occurred_at, time_precision, lat, lon, operation,
                   {", ".join(MEASURES)}
            FROM {{db}}.events FINAL
            WHERE cell{res} = %(cell)s AND {where} AND (%(kind)s = '' OR kind = %(kind)s)
            ORDER BY occurred_at, event_id LIMIT %(limit)s""",
        {"cell": cell_id, "start": start, "kind": kind or "", "limit": int(limit)})
    return [{"event_id": r["event_id"], "kind": r["kind"], "occurred_at": _utc(r["occurred_at"]),
             "time_precision": r["time_precision"], "lat": r["lat"], "lon": r["lon"],
             "operation": r["operation"] or None,
             "measures": {_LABEL.get(m, m): _present(m, r[m]) for m in MEASURES
                          if m != "count" and r[m]}}
            for r in rows]

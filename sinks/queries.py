"""Hotspot queries over the rollups. Cells leave here as H3 strings, periods as ISO dates."""

from __future__ import annotations

from datetime import date
from typing import Any

from hotspots.contract import KINDS
from hotspots.geo import RESOLUTIONS, to_str
from hotspots.periods import PERIODS, start_of
from sinks.store import Store
from streams.rollup import DAILY_RES


class QueryError(ValueError):
    pass


# The statements the API and CLI run, by name: bench/queries.py times these very strings.
CELLS_SQL = """SELECT cell, period_start, kind, count FROM {db}.rollups FINAL
           WHERE period = %(period)s AND res = %(res)s
             AND period_start BETWEEN %(first)s AND %(end)s
             AND (%(kind)s = '' OR kind = %(kind)s) AND count > 0
           ORDER BY period_start, kind, cell"""

TOP_SQL = """SELECT cell, count, charged, executed, weapons, drugs_mg, cash_pence,
                  sentence_months, people
           FROM {db}.rollups FINAL
           WHERE period = 'week' AND res = %(res)s AND period_start = %(week)s
             AND kind = %(kind)s AND count > 0
           ORDER BY count DESC, cell LIMIT %(limit)s"""

SUMMARY_SQL = """SELECT kind, sum(count) AS count, sum(charged) AS charged, sum(executed) AS executed,
                  sum(weapons) AS weapons, sum(drugs_mg) AS drugs_mg,
                  sum(cash_pence) AS cash_pence, sum(sentence_months) AS sentence_months,
                  sum(people) AS people
           FROM {db}.rollups FINAL
           WHERE period = 'day' AND res = %(res)s AND period_start BETWEEN %(start)s AND %(end)s
           GROUP BY kind"""


def _check(res: int, period: str, kind: str | None) -> None:
    if res not in RESOLUTIONS:
        raise QueryError(f"resolution {res} not kept; choose one of {sorted(RESOLUTIONS)}")
    if period not in PERIODS:
        raise QueryError(f"period {period!r} unknown; choose one of {PERIODS}")
    if period == "day" and res != DAILY_RES:
        raise QueryError(f"daily rollups are kept at resolution {DAILY_RES} only")
    if kind is not None and kind not in KINDS:
        raise QueryError(f"kind {kind!r} unknown; choose one of {KINDS}")


def check_args(periods: tuple[str, ...], period: str, start: date | None = None,
               res: int | None = None, kind: str | None = None) -> None:
    """The argument checks every analytic query shares, with the same messages."""
    if period not in periods:
        raise QueryError(f"period {period!r} not supported; choose one of {periods}")
    if start is not None and start != start_of(start, period):
        raise QueryError(f"{start} does not start a {period}; the {period} containing it "
                         f"starts {start_of(start, period)}")
    if res is not None and res not in RESOLUTIONS:
        raise QueryError(f"resolution {res} not kept; choose one of {sorted(RESOLUTIONS)}")
    if kind is not None and kind not in KINDS:
        raise QueryError(f"kind {kind!r} unknown; choose one of {KINDS}")


def cells(store: Store, start: date, end: date, res: int = 8, period: str = "week",
          kind: str | None = None) -> list[dict[str, Any]]:
    """Counts per (cell, period, kind) for every period that overlaps [start, end]."""
    _check(res, period, kind)
    rows = store.query(
        CELLS_SQL,
        {"period": period, "res": res, "first": start_of(start, period), "end": end,
         "kind": kind or ""})
    return [{"cell": to_str(r["cell"]), "period_start": r["period_start"].isoformat(),
             "kind": r["kind"], "count": int(r["count"])} for r in rows]


def top(store: Store, week: date, kind: str, res: int = 8, limit: int = 10) -> list[dict[str, Any]]:
    """The busiest cells in one ISO week for one kind."""
    _check(res, "week", kind)
    rows = store.query(
        TOP_SQL,
        {"res": res, "week": week, "kind": kind, "limit": int(limit)})
    shown = KIND_MEASURES.get(kind, ())
    return [{"rank": i + 1, "cell": to_str(r["cell"]), "week_start": week.isoformat(), "kind": kind,
             "count": int(r["count"]), **{_LABEL.get(m, m): _present(m, r[m]) for m in shown}}
            for i, r in enumerate(rows)]


# The measures that mean something for each kind, as top lists show them.
KIND_MEASURES: dict[str, tuple[str, ...]] = {
    "arrest": ("charged",),
    "seizure": ("weapons", "drugs_mg", "cash_pence"),
    "warrant": ("executed",),
    "safeguarding": ("people",),
    "gang_injunction": ("people",),
    "risk_order": ("people",),
    "court_outcome": ("sentence_months",),
}


_LABEL = {"drugs_mg": "drugs_grams", "cash_pence": "cash_gbp"}


def _present(measure: str, value: int) -> Any:
    """Integer units inside, familiar units at the edge."""
    if measure == "drugs_mg":
        return value / 1000
    if measure == "cash_pence":
        return value / 100
    return int(value)


def summary(store: Store, start: date, end: date) -> dict[str, Any]:
    """Headline enforcement figures for London-local dates start..end inclusive."""
    rows = store.query(
        SUMMARY_SQL,
        {"res": DAILY_RES, "start": start, "end": end})
    by_kind = {r["kind"]: r for r in rows}

    def total(kind: str, measure: str) -> int:
        return int(by_kind.get(kind, {}).get(measure, 0))

    arrests, charged = total("arrest", "count"), total("arrest", "charged")
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "arrests": arrests,
        "charged": charged,
        "charge_rate": round(charged / arrests, 4) if arrests else None,
        "weapons_seized": total("seizure", "weapons"),
        "drugs_grams": total("seizure", "drugs_mg") / 1000,
        "cash_gbp": total("seizure", "cash_pence") / 100,
        "warrants_executed": total("warrant", "executed"),
        "sentence_years": round(total("court_outcome", "sentence_months") / 12, 2),
        "safeguarded": total("safeguarding", "people"),
    }


def dead_letters(store: Store, samples: int = 3) -> list[dict[str, Any]]:
    """Refused records by reason: how many, when last, and a few samples of each."""
    rows = store.query(
        """SELECT reason, count() AS records, max(received_at) AS last_received,
                  arraySlice(groupArray(tuple(source, detail, substring(raw, 1, 300))), 1,
                             %(samples)s) AS samples
           FROM {db}.dead_letters FINAL
           GROUP BY reason ORDER BY records DESC, reason""",
        {"samples": int(samples)})
    return [{"reason": r["reason"], "records": int(r["records"]),
             "last_received": r["last_received"].isoformat(),
             "samples": [{"source": s, "detail": d, "raw": raw} for s, d, raw in r["samples"]]}
            for r in rows]

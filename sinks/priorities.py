"""Warrant priorities: res-8 cells ranked for the tasking meeting by an explainable additive score.

score = Σ weight × value over TERMS; every value is in [0, 1] (trend in [−1, 1]), so a term adds
at most its weight in points. Each contribution is rounded to 0.01 point and the score is the
sum of the rounded contributions (in integer hundredths): the shown parts add up exactly.

Windows end at ``as_of`` inclusive, in London-local days:
- harm: CCHI harm-days (sinks.harm) of day-precision recorded crime in the last 28 days, plus
  month-precision crime (police.uk) in the last complete month; ÷ the largest cell's.
- trend: pluggable (``Trend``). Default: the EHSA class (sinks.ehsa) of TREND_KIND over the 12
  complete weeks to as_of when sinks.ehsa is importable, else ``ratio_trend``.
- near_repeat: incidents (NEAR_REPEAT_KINDS) in the cell and its k=1 ring in the last 14 days,
  each weighted 0.5^(age / 7 days); ÷ the largest.
- enforcement: arrests + seizures in the last 56 days; ÷ the largest.
- vulnerability: people safeguarded + cuckooing_address events in the last 84 days; ÷ the
  largest. A cuckooing_address event (located by cell only) flags the cell "cuckooing flagged".
- warrant_penalty: 1 − 0.5^n for n warrants executed in the cell in the last 28 days, subtracted.
Raw events are read (one bounded query): harm needs crime types, which the rollups lack.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from h3.api import basic_int as h3i

from hotspots.geo import to_int, to_str
from hotspots.periods import start_of
from sinks.harm import harm_days
from sinks.store import Store

# (key, plain-English name) in display order; the penalty is last.
TERMS: tuple[tuple[str, str], ...] = (
    ("harm", "recent crime harm"), ("trend", "rising activity"),
    ("near_repeat", "near-repeat risk"), ("enforcement", "recent arrests and seizures"),
    ("vulnerability", "vulnerability"),
    ("warrant_penalty", "recent warrant executed"))
HARM_DAYS, NEAR_DAYS, HALF_LIFE, ENF_DAYS, VULN_DAYS, WARRANT_DAYS = 28, 14, 7.0, 56, 84, 28
NEAR_REPEAT_KINDS = ("recorded_crime", "arrest", "seizure", "safeguarding", "cuckooing_address",
                     "line_closure")
ACTIVITY_KINDS = (*NEAR_REPEAT_KINDS, "stop_search")  # ratio_trend's weekly counts
TREND_KIND = "arrest"  # the densest day-precision series; police.uk crime has no weekly rollups
_KINDS = (*ACTIVITY_KINDS, "warrant")
COLUMNS = ("cell", "rank", "score", *(t for t, _ in TERMS), "harm_days", "trend_signal",
           "nearby_incidents", "arrests_seizures", "safeguarded", "cuckooing_flagged",
           "warrants_executed", "reason")


@dataclass(frozen=True)
class Weights:
    """Points a term adds at full value (the penalty: points it takes away)."""

    harm: float = 30.0
    trend: float = 10.0
    near_repeat: float = 20.0
    enforcement: float = 15.0
    vulnerability: float = 25.0
    warrant_penalty: float = 25.0


WEIGHTS = Weights()
# cell -> (value in [-1, 1], a short label of the evidence)
Trend = Callable[[Store, date], dict[int, tuple[float, str]]]


def last_complete_week(as_of: date) -> date:
    """Monday of the last ISO week that ends on or before as_of."""
    return start_of(as_of + timedelta(days=1), "week") - timedelta(weeks=1)


def ratio_trend(store: Store, as_of: date) -> dict[int, tuple[float, str]]:
    """Activity in the last 4 complete weeks against the 4 before, from the weekly rollups:
    value = log2((last + 1) / (previous + 1)) / 2, clipped to [−1, 1] (×4 or more = 1)."""
    last = last_complete_week(as_of)
    rows = store.query(
        """SELECT cell, period_start >= %(split)s AS recent, sum(count) AS n FROM {db}.rollups FINAL
           WHERE period = 'week' AND res = 8 AND kind IN %(kinds)s
             AND period_start BETWEEN %(first)s AND %(last)s GROUP BY cell, recent""",
        {"kinds": ACTIVITY_KINDS, "first": last - timedelta(weeks=7),
         "split": last - timedelta(weeks=3), "last": last})
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        counts[int(r["cell"])][int(r["recent"])] += int(r["n"])
    return {c: (max(-1.0, min(1.0, math.log2((new + 1) / (old + 1)) / 2)), f"{new} v {old} events")
            for c, (old, new) in counts.items()}


# EHSA hot-side patterns to trend values; cold classes take minus half the mirrored value.
EHSA_VALUES = {"new": 1.0, "consecutive": 1.0, "intensifying": 1.0, "persistent": 0.5,
               "sporadic": 0.5, "oscillating": 0.5, "diminishing": 0.25, "historical": 0.0}


def ehsa_trend(kind: str = TREND_KIND, weeks: int = 12) -> Trend:
    from sinks.ehsa import ehsa

    def trend(store: Store, as_of: date) -> dict[int, tuple[float, str]]:
        out = {}
        for r in ehsa(store, last_complete_week(as_of), kind, 8, weeks):
            pattern, _, side = r["class"].removesuffix("_spot").rpartition("_")
            if pattern in EHSA_VALUES:
                value = EHSA_VALUES[pattern] * (1.0 if side == "hot" else -0.5)
                out[to_int(r["cell"])] = (value, r["class"].replace("_", " "))
        return out

    return trend


def default_trend() -> Trend:
    try:
        return ehsa_trend()
    except ImportError:
        return ratio_trend


def _evidence(store: Store, as_of: date) -> dict[int, dict[str, Any]]:
    """Raw figures per res-8 cell from one query over the bounded window of raw events."""
    rows = store.query(
        """SELECT cell8 AS cell, kind, time_precision = 'month' AS monthly, month_start,
                  if(kind = 'recorded_crime', JSONExtractString(payload, 'crime_type'), '') AS ctype,
                  dateDiff('day', toDate(occurred_at, 'Europe/London'), toDate(%(as_of)s)) AS age,
                  count() AS n, sum(people) AS people, sum(executed) AS executed
           FROM {db}.events FINAL
           WHERE week_start BETWEEN %(first)s AND %(as_of)s AND kind IN %(kinds)s
           GROUP BY cell, kind, monthly, month_start, ctype, age""",
        {"as_of": as_of, "first": start_of(as_of - timedelta(days=VULN_DAYS + 7), "week"),
         "kinds": _KINDS})
    last_month = start_of(start_of(as_of + timedelta(days=1), "month") - timedelta(days=1), "month")
    ev: dict[int, dict[str, Any]] = defaultdict(lambda: {
        "harm_days": 0, "incidents": 0.0, "arrests_seizures": 0, "safeguarded": 0,
        "cuckooing": 0, "warrants_executed": 0})
    for r in rows:
        e, kind, n, age = ev[int(r["cell"])], r["kind"], int(r["n"]), int(r["age"])
        if r["monthly"]:
            if kind == "recorded_crime" and r["month_start"] == last_month:
                e["harm_days"] += n * harm_days(r["ctype"])
            continue
        if not 0 <= age < VULN_DAYS:
            continue
        if kind == "recorded_crime" and age < HARM_DAYS:
            e["harm_days"] += n * harm_days(r["ctype"])
        if kind in NEAR_REPEAT_KINDS and age < NEAR_DAYS:
            e["incidents"] += n * 0.5 ** (age / HALF_LIFE)
        if kind in ("arrest", "seizure") and age < ENF_DAYS:
            e["arrests_seizures"] += n
        if kind == "safeguarding":
            e["safeguarded"] += int(r["people"])
        if kind == "cuckooing_address":
            e["cuckooing"] += n
        if kind == "warrant" and age < WARRANT_DAYS:
            e["warrants_executed"] += int(r["executed"])
    return ev


def _reason(row: dict[str, Any]) -> str:
    facts = {"harm": f"{row['harm_days']:,} harm-days", "trend": row["trend_signal"],
             "near_repeat": f"{row['nearby_incidents']:.1f} decayed incidents within one ring",
             "enforcement": f"{row['arrests_seizures']} in 8 weeks",
             "vulnerability": f"{row['safeguarded']} safeguarded" + (
                 ", cuckooing flagged" if row["cuckooing_flagged"] else "")}
    names = dict(TERMS)
    top = sorted((t for t in facts if row[t] > 0), key=lambda t: (-row[t], list(facts).index(t)))[:2]
    text = " and ".join(f"{names[t]} ({facts[t]})" for t in top) if top else "no positive signal"
    if row["cuckooing_flagged"] and "vulnerability" not in top:
        text += "; cuckooing flagged"
    if row["warrant_penalty"]:
        text += f"; less: {row['warrants_executed']} warrant(s) executed here in the last 4 weeks"
    return text[0].upper() + text[1:]


def priorities(store: Store, as_of: date, limit: int = 20, weights: Weights = WEIGHTS,
               trend: Trend | None = None) -> list[dict[str, Any]]:
    """The ``limit`` highest-scoring res-8 cells (module docstring), rank 1 first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    ev = _evidence(store, as_of)
    trends = (trend or default_trend())(store, as_of)
    nearby: dict[int, float] = defaultdict(float)
    for cell, e in list(ev.items()):
        if e["incidents"]:
            for ring in h3i.grid_disk(cell, 1):
                nearby[int(ring)] += e["incidents"]
    raw = {"harm": "harm_days", "enforcement": "arrests_seizures"}
    cells = {c for c, e in ev.items() if e["harm_days"] or e["arrests_seizures"] or e["safeguarded"]
             or e["cuckooing"]} | set(nearby) | {c for c, (v, _) in trends.items() if v > 0}
    top = {k: max((ev[c][f] for c in cells), default=0) or 1 for k, f in raw.items()}
    top_near = max(nearby.values(), default=0.0) or 1.0
    top_vuln = max((ev[c]["safeguarded"] + ev[c]["cuckooing"] for c in cells), default=0) or 1
    w = asdict(weights)
    rows = []
    for c in cells:
        e = ev[c]
        values = {"harm": e["harm_days"] / top["harm"], "trend": trends.get(c, (0.0, ""))[0],
                  "near_repeat": nearby.get(c, 0.0) / top_near,
                  "enforcement": e["arrests_seizures"] / top["enforcement"],
                  "vulnerability": (e["safeguarded"] + e["cuckooing"]) / top_vuln,
                  "warrant_penalty": -(1 - 0.5 ** e["warrants_executed"])}
        hundredths = {t: round(w[t] * values[t] * 100) for t, _ in TERMS}
        row: dict[str, Any] = {"cell": to_str(c), "rank": 0, "score": sum(hundredths.values()) / 100,
                               **{t: h / 100 for t, h in hundredths.items()},
                               "harm_days": e["harm_days"],
                               "trend_signal": trends.get(c, (0.0, "no change"))[1] or "no change",
                               "nearby_incidents": round(nearby.get(c, 0.0), 2),
                               "arrests_seizures": e["arrests_seizures"],
                               "safeguarded": e["safeguarded"], "cuckooing_flagged": e["cuckooing"] > 0,
                               "warrants_executed": e["warrants_executed"]}
        rows.append(row)
    rows.sort(key=lambda r: (-r["score"], r["cell"]))
    for i, row in enumerate(rows[:limit]):
        row["rank"] = i + 1
        row["reason"] = _reason(row)
    return rows[:limit]

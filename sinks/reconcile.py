"""Reconcile the rollups with the raw events they were folded from.

Every rollup key is recomputed in the store from the raw ``events`` table (read with
FINAL) by the same rules as ``streams.rollup.rollup_keys``: monthly keys at every
resolution for every event; weekly keys at every resolution and a daily key at
``DAILY_RES`` only when the day is known (``time_precision != 'month'``). The day is the
Europe/London date of ``occurred_at``; weeks and months are the stored ``week_start`` and
``month_start`` (computed by the worker with the same rules). The result is compared,
key by key and measure by measure, with the ``rollups`` table (FINAL) in one query.
A stored rollup whose measures are all zero counts as absent.

A date range limits the check to the keys whose period overlaps ``[start, end]`` (as
``queries.cells`` does); the recomputation always uses every event of those periods.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hotspots.contract import MEASURES
from hotspots.geo import RESOLUTIONS, to_str
from hotspots.periods import start_of
from sinks.store import Store
from streams.rollup import DAILY_RES

MAX_EXAMPLES = 100
TIMEZONE = "Europe/London"
# The range of ClickHouse's Date type: an open end of the range means "everything".
_FIRST_DATE, _LAST_DATE = date(1970, 1, 1), date(2149, 6, 6)

_KEY = "period, res, kind, period_start, cell"
_MEASURE_LIST = ", ".join(MEASURES)


def key_rules() -> list[tuple[str, int, str, bool]]:
    """The rules of rollup_keys as (period, res, its start as SQL on ``events``, whether
    the day must be known): monthly keys at every resolution, weekly ones at every resolution
    and a daily one at DAILY_RES only when it is."""
    local_day = f"toDate(occurred_at, '{TIMEZONE}')"
    return [*(("month", res, "month_start", False) for res in RESOLUTIONS),
            *(("week", res, "week_start", True) for res in RESOLUTIONS),
            ("day", DAILY_RES, local_day, True)]


def event_keys() -> str:
    """Each event's rollup keys as (period, res, period_start, cell) tuples, as rollup_keys."""
    def key(period: str, res: int, start: str) -> str:
        return f"('{period}', toUInt8({res}), {start}, cell{res})"

    always = ", ".join(key(p, r, start) for p, r, start, needs_day in key_rules() if not needs_day)
    with_day = ", ".join(key(p, r, start) for p, r, start, needs_day in key_rules() if needs_day)
    return f"arrayConcat([{always}], if(time_precision = 'month', [], [{with_day}]))"


_IN_RANGE = ("period_start BETWEEN multiIf(period = 'day', toDate(%(first_day)s), "
             "period = 'week', toDate(%(first_week)s), toDate(%(first_month)s)) "
             "AND toDate(%(last)s)")
_NONZERO = " OR ".join(f"{m} != 0" for m in MEASURES)

_RECONCILE_SQL = f"""
SELECT count() AS keys_checked,
       countIf(drifted) AS drifted_keys,
       countIf(in_events AND NOT in_rollups) AS missing_in_rollups,
       countIf(in_rollups AND NOT in_events) AS extra_in_rollups,
       groupArraySortedIf({MAX_EXAMPLES})(({_KEY}, expected, stored), drifted) AS examples
FROM (
  SELECT {_KEY},
         max(side = 'e') AS in_events, max(side = 's') AS in_rollups,
         [{", ".join(f"sumIf({m}, side = 'e')" for m in MEASURES)}] AS expected,
         [{", ".join(f"sumIf({m}, side = 's')" for m in MEASURES)}] AS stored,
         expected != stored AS drifted
  FROM (
    SELECT {_KEY}, 'e' AS side, {_MEASURE_LIST}
    FROM (
      SELECT k.1 AS period, k.2 AS res, kind, k.3 AS period_start, k.4 AS cell, {_MEASURE_LIST}
      FROM (
        SELECT kind, time_precision, occurred_at, week_start, month_start, cell8, cell7, cell6,
               {_MEASURE_LIST}
        FROM {{db}}.events FINAL
        -- only a cheap pre-filter: an event's keys start between its week or month and its day
        WHERE week_start >= toDate(%(lowest_week)s)
          AND least(week_start, month_start) <= toDate(%(last)s)
      )
      ARRAY JOIN {event_keys()} AS k
    )
    WHERE {_IN_RANGE}
    UNION ALL
    SELECT {_KEY}, 's' AS side, {_MEASURE_LIST}
    FROM {{db}}.rollups FINAL
    WHERE {_IN_RANGE} AND ({_NONZERO})
  )
  GROUP BY {_KEY}
)
"""

# Event ids held more than once after FINAL: the raw table deduplicates on
# (kind, week_start, cell8, event_id), so one id with different content stays twice.
_DUPLICATES_SQL = f"""
SELECT count() AS ids, groupArraySorted({MAX_EXAMPLES})(event_id) AS examples
FROM (
  SELECT event_id FROM {{db}}.events FINAL
  GROUP BY event_id
  HAVING count() > 1
     AND countIf(toDate(occurred_at, '{TIMEZONE}') BETWEEN toDate(%(start)s) AND toDate(%(end)s)) > 0
)
"""


def _params(start: date | None, end: date | None) -> dict[str, Any]:
    lo = max(start or _FIRST_DATE, _FIRST_DATE)
    hi = min(end or _LAST_DATE, _LAST_DATE)
    if lo > hi:
        raise ValueError(f"empty date range: from {lo.isoformat()} is after to {hi.isoformat()}")
    firsts = {period: max(start_of(lo, period), _FIRST_DATE) for period in ("day", "week", "month")}
    return {"start": lo, "end": hi, "last": hi,
            "first_day": firsts["day"], "first_week": firsts["week"], "first_month": firsts["month"],
            "lowest_week": max(start_of(min(firsts.values()), "week"), _FIRST_DATE)}


def reconcile(store: Store, start: date | None = None, end: date | None = None) -> dict[str, Any]:
    """Rollups recomputed from the raw events and compared with the stored ones.

    ``drift`` lists up to MAX_EXAMPLES (key, measure) differences, in key order;
    ``drifted_keys`` counts every key that differs in any measure. ``ok`` is true when
    nothing drifted and no event id is held twice in the raw table.
    """
    params = _params(start, end)
    (row,) = store.query(_RECONCILE_SQL, params)
    drift: list[dict[str, Any]] = []
    for period, res, kind, period_start, cell, expected, stored in row["examples"]:
        for measure, want, have in zip(MEASURES, expected, stored, strict=True):
            if want != have and len(drift) < MAX_EXAMPLES:
                drift.append({"period": period, "res": int(res), "cell": to_str(int(cell)),
                              "period_start": period_start.isoformat(), "kind": kind,
                              "measure": measure, "expected": int(want), "stored": int(have)})
    (dups,) = store.query(_DUPLICATES_SQL, params)
    drifted = int(row["drifted_keys"])
    duplicated = int(dups["ids"])
    return {
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "ok": drifted == 0 and duplicated == 0,
        "keys_checked": int(row["keys_checked"]),
        "drifted_keys": drifted,
        "missing_in_rollups": int(row["missing_in_rollups"]),
        "extra_in_rollups": int(row["extra_in_rollups"]),
        "duplicate_event_id_count": duplicated,
        "duplicate_event_ids": list(dups["examples"]),
        "drift": drift,
    }


def summary_text(result: dict[str, Any]) -> str:
    """A reconcile result for people: a verdict line, the counts, then the examples."""
    from hotspots.output import render

    span = f"{result.get('from') or 'start'}..{result.get('to') or 'end'}"
    if result["ok"]:
        return (f"reconcile {span}: OK - {result['keys_checked']} rollup keys match the raw events; "
                "no duplicate event ids")
    counts = {k: result[k] for k in ("keys_checked", "drifted_keys", "missing_in_rollups",
                                     "extra_in_rollups", "duplicate_event_id_count")}
    lines = [f"reconcile {span}: DRIFT - {result['drifted_keys']} of {result['keys_checked']} rollup "
             f"keys differ from the raw events; {result['duplicate_event_id_count']} event ids "
             "are held more than once", "", render(counts, "table")]
    if result["drift"]:
        lines += ["", f"drift (first {len(result['drift'])} differences, in key order):",
                  render(result["drift"], "table")]
    if result["duplicate_event_ids"]:
        lines += ["", f"duplicate event ids (first {len(result['duplicate_event_ids'])}):",
                  *(f"  {event_id}" for event_id in result["duplicate_event_ids"])]
    return "\n".join(lines)

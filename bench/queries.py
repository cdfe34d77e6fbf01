"""Dashboard query latency at N raw events: rollups against the same answer from the raw table.

    python -m bench.queries [--events 10000000] [--runs 30] [--repeats 3]

Raw events are generated inside the engine (clustered around real Essex towns, one year),
the rollups are built from them with the same keys the worker uses, and both tables are
settled (OPTIMIZE FINAL) before any timing, as background merges leave them: left alone, a
merge could land in the middle of the timings. Every case then runs the product's own
statements (the Grafana panels' rawSql, expanded as the ClickHouse data source does, and the
SQL of sinks.queries and sinks.gistar, imported, not copied) against the rollups, and the
same answer computed from the raw table, after checking both give the same rows. Results go
to bench/results/queries-<time>.json and a markdown table on stdout (copied into
docs/bench.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from dashboards import build
from dashboards.macros import expand
from hotspots.contract import MEASURES
from hotspots.settings import SinkSettings
from sinks import gistar, queries
from sinks.store import Store
from streams.rollup import DAILY_RES

TOWNS = [(51.5761, 0.4886), (51.5459, 0.7077), (51.7727, 0.1023), (51.7356, 0.4685),
         (51.8959, 0.8919), (51.4755, 0.3271), (51.6870, -0.0040), (51.8787, 0.5528),
         (51.7896, 1.1542), (51.5232, 0.5836)]
KINDS = ["arrest", "seizure", "warrant", "safeguarding", "court_outcome", "recorded_crime"]

# p95 under 50 ms and at least 10x faster than the raw table's answer (issue #7).
TARGET_P95_MS, TARGET_RATIO = 50.0, 10.0


def load(store: Store, n: int) -> None:
    towns = "[" + ",".join(f"({lat},{lon})" for lat, lon in TOWNS) + "]"
    kinds = "[" + ",".join(f"'{k}'" for k in KINDS) + "]"
    # Week and month starts follow Europe/London, as the worker computes them.
    store.command(f"""
INSERT INTO {{db}}.events (event_id, kind, occurred_at, time_precision, week_start, month_start,
    lat, lon, force, operation, cell8, cell7, cell6, count, charged, payload)
SELECT event_id, kind, occurred_at, 'instant',
       toMonday(toDate(occurred_at, 'Europe/London')),
       toStartOfMonth(toDate(occurred_at, 'Europe/London')),
       lat, lon, 'essex', '', cell8, h3ToParent(cell8, 7), h3ToParent(cell8, 6), 1,
       kind = 'arrest' AND rand(3) % 10 < 7, ''
FROM (
  SELECT concat('bench-', toString(number)) AS event_id,
         {kinds}[1 + rand(1) % {len(KINDS)}] AS kind,
         toDateTime64('2024-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(rand(2) % 31536000)
           AS occurred_at,
         {towns}[1 + rand(4) % {len(TOWNS)}] AS town,
         town.1 + (randNormal(0, 0.012)) AS lat,
         town.2 + (randNormal(0, 0.018)) AS lon,
         geoToH3(lat, lon, 8) AS cell8
  FROM numbers({n})
) SETTINGS geotoh3_argument_order = 'lat_lon'""".replace("{db}", store.database))
    for period, res_list, start in (("week", (8, 7, 6), "week_start"),
                                    ("month", (8, 7, 6), "month_start"),
                                    ("day", (6,), "toDate(occurred_at, 'Europe/London')")):
        for res in res_list:
            store.command(f"""
INSERT INTO {store.database}.rollups (period, res, kind, period_start, cell, count, charged, seq)
SELECT '{period}', {res}, kind, {start} AS ps, cell{res}, count(), sum(charged), count()
FROM {store.database}.events GROUP BY kind, ps, cell{res}""")


def settle(store: Store) -> dict[str, int]:
    """Merge both tables down as background merges would, so that no merge runs (and no
    table changes shape) during the timings. Returns each table's active parts."""
    for table in ("events", "rollups"):
        store.command(f"OPTIMIZE TABLE {store.database}.{table} FINAL")
    rows = store.query("""SELECT table, count() AS parts FROM system.parts
                          WHERE database = %(db)s AND active AND table IN ('events', 'rollups')
                          GROUP BY table""", {"db": store.database})
    return {r["table"]: int(r["parts"]) for r in rows}


Statement = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One answer the product serves: its statements on the rollups (run in order, timed
    together) and statements giving the same rows from the raw events table."""
    name: str
    served_by: str
    rollup: list[Statement]
    raw: list[Statement]
    ordered: bool = True  # compare rows in order; else as multisets (the SQL has no ORDER BY)


# Raw counterparts of the rollups' rules (sinks/reconcile.py states them): weekly and daily
# rollups count day-precision events only; a rollup's measures are its events' sums.
DAY_KNOWN = "time_precision != 'month'"
RAW_SUMS = ", ".join(f"sum({m}) AS {m}" for m in MEASURES)

# The dashboards as they open "now" = 2025-01-01 00:00 UTC, just after the bench's year of
# data, with their default ranges (live map and priorities: 28 days; trends: 1 year) and
# the first choice of each variable.
NOW = datetime(2025, 1, 1, tzinfo=UTC)
PANEL_VARIABLES = {"kind": "arrest", "res": 8}


def panel_sql(title: str) -> tuple[str, timedelta]:
    """A Grafana panel's rawSql and its dashboard's default range (``now-28d`` and so on)."""
    for dash in build.dashboards().values():
        for p in dash["panels"]:
            if p["title"] == title:
                days = int(dash["time"]["from"].removeprefix("now-")[:-1])
                unit = dash["time"]["from"][-1]
                return p["targets"][0]["rawSql"], timedelta(days=days * (365 if unit == "y" else 1))
    raise KeyError(title)


def panel_case(title: str, raw_sql: str) -> Case:
    """The panel's query and ``raw_sql`` (written with the same macros and variables), both
    expanded for the panel's default range ending at NOW."""
    sql, span = panel_sql(title)

    def expanded(text: str) -> Statement:
        # store.query() fills {db} with str.format: the panel's own braces must survive it.
        out = expand(text, NOW - span, NOW, PANEL_VARIABLES, database="__db__")
        return out.replace("{", "{{").replace("}", "}}").replace("__db__.", "{db}."), {}

    return Case(f"Grafana: {title} ({span.days} days)", "Grafana", [expanded(sql)],
                [expanded(raw_sql)])


RAW_WEEKS = "week_start BETWEEN toMonday(toDate($__fromTime)) AND toDate($__toTime)"
RAW_LAT, RAW_LON = "tupleElement(h3ToGeo(cell${res}), 1)", "tupleElement(h3ToGeo(cell${res}), 2)"


def cases() -> list[Case]:
    week, quarter = date(2024, 7, 1), (date(2024, 4, 1), date(2024, 6, 30))
    year = (date(2024, 1, 1), date(2024, 12, 31))
    top = {"res": 8, "week": week, "kind": "arrest", "limit": 10}
    cells = {"period": "week", "res": 7, "first": quarter[0], "end": quarter[1], "kind": ""}
    summary = {"res": DAILY_RES, "start": year[0], "end": year[1]}
    gi = {"period": "week", "res": 8, "kind": "seizure", "start": week}
    return [
        panel_case("Live heat map", f"""
            SELECT h3ToString(cell${{res}}) AS cell_id, {RAW_LAT} AS latitude,
                   {RAW_LON} AS longitude, sum(count) AS count
            FROM hotspots.events FINAL
            WHERE kind = '${{kind}}' AND {RAW_WEEKS} AND {DAY_KNOWN}
            GROUP BY cell${{res}} HAVING count > 0
            ORDER BY count DESC, cell_id LIMIT 5000"""),
        panel_case("Top cells", f"""
            SELECT h3ToString(cell${{res}}) AS cell, sum(count) AS count, sum(charged) AS charged,
                   sum(executed) AS executed, sum(weapons) AS weapons,
                   sum(drugs_mg) / 1000 AS drugs_grams, sum(cash_pence) / 100 AS cash_gbp,
                   sum(sentence_months) AS sentence_months, sum(people) AS people
            FROM hotspots.events FINAL
            WHERE kind = '${{kind}}' AND {RAW_WEEKS} AND {DAY_KNOWN}
            GROUP BY cell${{res}} HAVING count > 0
            ORDER BY count DESC, cell LIMIT 20"""),
        panel_case("Weekly events by kind", f"""
            SELECT toDateTime(week_start) AS time, kind, sum(count) AS count
            FROM hotspots.events FINAL
            WHERE {RAW_WEEKS} AND {DAY_KNOWN}
            GROUP BY time, kind
            ORDER BY time, kind"""),
        panel_case("Warrant priorities (rollup proxy)", f"""
            SELECT h3ToString(cell${{res}}) AS cell_id, {RAW_LAT} AS latitude,
                   {RAW_LON} AS longitude,
                   sumIf(count, kind = 'arrest') AS arrests,
                   sumIf(count, kind = 'seizure') AS seizures,
                   sumIf(people, kind = 'safeguarding') AS safeguarded,
                   sumIf(executed, kind = 'warrant') AS warrants_executed,
                   arrests + seizures + safeguarded AS signal
            FROM hotspots.events FINAL
            WHERE kind IN ('arrest', 'seizure', 'safeguarding', 'warrant') AND {RAW_WEEKS}
              AND {DAY_KNOWN}
            GROUP BY cell${{res}} HAVING signal > 0
            ORDER BY signal DESC, cell_id LIMIT 25"""),
        Case("top cells in a week (API /v1/top, res 8)", "sinks.queries.top",
             [(queries.TOP_SQL, top)],
             [(f"""SELECT cell8 AS cell, {RAW_SUMS} FROM {{db}}.events FINAL
                   WHERE kind = %(kind)s AND week_start = %(week)s AND {DAY_KNOWN}
                   GROUP BY cell HAVING count > 0
                   ORDER BY count DESC, cell LIMIT %(limit)s""", top)]),
        Case("cells by week, one quarter, res 7 (API /v1/cells)", "sinks.queries.cells",
             [(queries.CELLS_SQL, cells)],
             [(f"""SELECT cell7 AS cell, week_start AS period_start, kind, sum(count) AS count
                   FROM {{db}}.events FINAL
                   WHERE week_start BETWEEN %(first)s AND %(end)s AND {DAY_KNOWN}
                   GROUP BY cell, period_start, kind HAVING count > 0
                   ORDER BY period_start, kind, cell""", cells)]),
        # Bounding occurred_at by the London days' instants instead was no faster: the time
        # goes to summing the measures of every row of the year.
        Case("summary over a year (API /v1/summary)", "sinks.queries.summary",
             [(queries.SUMMARY_SQL, summary)],
             [(f"""SELECT kind, {RAW_SUMS} FROM {{db}}.events FINAL
                   WHERE toDate(occurred_at, 'Europe/London') BETWEEN %(start)s AND %(end)s
                     AND {DAY_KNOWN}
                   GROUP BY kind""", summary)], ordered=False),
        Case("Gi* inputs: study area and week counts (API /v1/gistar)", "sinks.gistar.gistar",
             [(gistar.STUDY_AREA_SQL, {"res": 8}), (gistar.COUNTS_SQL, gi)],
             [("SELECT DISTINCT cell8 AS cell FROM {db}.events FINAL", {}),
              (f"""SELECT cell8 AS cell, sum(count) AS count FROM {{db}}.events FINAL
                   WHERE kind = %(kind)s AND week_start = %(start)s AND {DAY_KNOWN}
                   GROUP BY cell HAVING count > 0""", gi)], ordered=False),
    ]


def run(store: Store, statements: list[Statement]) -> list[list[dict[str, Any]]]:
    return [store.query(sql, params) for sql, params in statements]


def timed(store: Store, statements: list[Statement], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(store, statements)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def same(a: list[list[dict[str, Any]]], b: list[list[dict[str, Any]]], ordered: bool) -> bool:
    if ordered:
        return a == b
    return [sorted(map(repr, rows)) for rows in a] == [sorted(map(repr, rows)) for rows in b]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(result: dict[str, Any]) -> dict[str, float]:
    rounds = result["rounds"]
    p95s = [x["rollup_p95"] for x in rounds]
    p95 = statistics.median(p95s)
    raw95 = statistics.median(x["raw_p95"] for x in rounds)
    return {"p50": statistics.median(x["rollup_p50"] for x in rounds), "p95": p95,
            "p95_min": min(p95s), "p95_max": max(p95s), "raw_p95": raw95, "ratio": raw95 / p95,
            "ratio_min": min(x["raw_p95"] / x["rollup_p95"] for x in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="independent rounds, for spread")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(SinkSettings(data_dir=Path(tmp), clickhouse_url=None, database="bench"))
        t0 = time.perf_counter()
        load(store, args.events)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        parts = settle(store)
        settle_s = time.perf_counter() - t0
        engine = store.query("SELECT version() AS v")[0]["v"]
        raw_rows = store.query("SELECT count() AS n FROM {db}.events")[0]["n"]
        rollup_rows = store.query("SELECT count() AS n FROM {db}.rollups")[0]["n"]
        results = []
        for case in cases():
            rows = run(store, case.rollup)
            assert same(rows, run(store, case.raw), case.ordered), \
                f"{case.name}: rollup and raw answers differ"
            rounds = []
            for _ in range(args.repeats):
                # As many raw runs as rollup runs: with fewer, the raw "p95" is its slowest
                # run, which flatters the ratio.
                fast = timed(store, case.rollup, args.runs)
                slow = timed(store, case.raw, args.runs)
                rounds.append({"rollup_p50": pct(fast, 0.5), "rollup_p95": pct(fast, 0.95),
                               "raw_p50": pct(slow, 0.5), "raw_p95": pct(slow, 0.95)})
            results.append({"query": case.name, "served_by": case.served_by,
                            "rows": [len(r) for r in rows], "rounds": rounds})
        store.close()
    report = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "raw_events": raw_rows,
              "rollup_rows": rollup_rows, "load_seconds": round(load_s, 1),
              "settle_seconds": round(settle_s, 1), "parts": parts, "engine": engine,
              "machine": f"{platform.machine()}, {platform.python_version()}, "
                         f"{os.cpu_count()} cores",
              "load_average": {"before": [round(x, 2) for x in load_before],
                               "after": [round(x, 2) for x in os.getloadavg()]},
              "runs": args.runs, "repeats": args.repeats, "results": results}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"queries-{report['at'].replace(':', '')}.json").write_text(json.dumps(report, indent=2))
    print(f"{raw_rows:,} raw events, {rollup_rows:,} rollup rows (ClickHouse {engine}), "
          f"generated in {load_s:.0f} s, settled in {settle_s:.0f} s to parts {parts}; "
          f"load average {report['load_average']}\n")
    print("| query | rows | rollup p50 ms | rollup p95 ms (spread over rounds) | raw p95 ms "
          "| raw / rollup | targets |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        s = summarise(r)
        met = s["p95_max"] < TARGET_P95_MS and s["ratio_min"] >= TARGET_RATIO
        print(f"| {r['query']} | {'+'.join(f'{n:,}' for n in r['rows'])} | {s['p50']:.1f} | "
              f"{s['p95']:.1f} ({s['p95_min']:.1f}–{s['p95_max']:.1f}) | {s['raw_p95']:.0f} | "
              f"{s['ratio']:.1f}× | {'met' if met else 'missed'} |")


if __name__ == "__main__":
    main()

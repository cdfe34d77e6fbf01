"""Dashboard query latency at N raw events: rollups against the same answer from the raw table.

    python -m bench.queries [--events 10000000] [--runs 30] [--repeats 3]

Raw events are generated inside the engine (clustered around real Essex towns, one year),
the rollups are built from them with the same keys the worker uses, and every dashboard
query is timed against the rollups and against the raw table in the same run, after
checking both give the same answer. Results go to bench/results/queries-<time>.json and a
markdown table on stdout (copied into docs/bench.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hotspots.settings import SinkSettings
from sinks.store import Store

TOWNS = [(51.5761, 0.4886), (51.5459, 0.7077), (51.7727, 0.1023), (51.7356, 0.4685),
         (51.8959, 0.8919), (51.4755, 0.3271), (51.6870, -0.0040), (51.8787, 0.5528),
         (51.7896, 1.1542), (51.5232, 0.5836)]
KINDS = ["arrest", "seizure", "warrant", "safeguarding", "court_outcome", "recorded_crime"]


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


# (name, rollup SQL, raw SQL): each pair must return the same rows.
QUERIES: list[tuple[str, str, str]] = [
    ("top cells in a week",
     """SELECT cell, count FROM {db}.rollups FINAL WHERE period = 'week' AND res = 8
        AND period_start = '2024-07-01' AND kind = 'arrest' ORDER BY count DESC, cell LIMIT 10""",
     """SELECT cell8 AS cell, count() AS count FROM {db}.events FINAL
        WHERE week_start = '2024-07-01' AND kind = 'arrest'
        GROUP BY cell ORDER BY count DESC, cell LIMIT 10"""),
    ("cells by week, one quarter, res 7",
     """SELECT cell, period_start, kind, count FROM {db}.rollups FINAL WHERE period = 'week'
        AND res = 7 AND period_start BETWEEN '2024-04-01' AND '2024-06-30'
        ORDER BY period_start, kind, cell""",
     """SELECT cell7 AS cell, week_start AS period_start, kind, count() AS count
        FROM {db}.events FINAL WHERE week_start BETWEEN '2024-04-01' AND '2024-06-30'
        GROUP BY cell, period_start, kind ORDER BY period_start, kind, cell"""),
    ("summary over a year",
     """SELECT kind, sum(count) AS n, sum(charged) AS c FROM {db}.rollups FINAL
        WHERE period = 'day' AND res = 6 AND period_start BETWEEN '2024-01-01' AND '2024-12-31'
        GROUP BY kind ORDER BY kind""",
     """SELECT kind, count() AS n, sum(charged) AS c FROM {db}.events FINAL
        WHERE toDate(occurred_at, 'Europe/London') BETWEEN '2024-01-01' AND '2024-12-31'
        GROUP BY kind ORDER BY kind"""),
    ("Gi* inputs: study area and week counts",
     """SELECT cell, sumIf(count, period = 'week' AND period_start = '2024-07-01'
                          AND kind = 'seizure') AS n
        FROM {db}.rollups FINAL WHERE res = 8 AND period IN ('week', 'month')
        GROUP BY cell ORDER BY cell""",
     """SELECT cell8 AS cell, countIf(week_start = '2024-07-01' AND kind = 'seizure') AS n
        FROM {db}.events FINAL GROUP BY cell ORDER BY cell"""),
]


def timed(store: Store, sql: str, runs: int) -> tuple[list[float], Any]:
    result = store.query(sql)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        store.query(sql)
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="independent rounds, for spread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(SinkSettings(data_dir=Path(tmp), clickhouse_url=None, database="bench"))
        t0 = time.perf_counter()
        load(store, args.events)
        store.command(f"OPTIMIZE TABLE {store.database}.rollups FINAL")
        load_s = time.perf_counter() - t0
        raw_rows = store.query("SELECT count() AS n FROM {db}.events")[0]["n"]
        rollup_rows = store.query("SELECT count() AS n FROM {db}.rollups")[0]["n"]
        results = []
        for name, rollup_sql, raw_sql in QUERIES:
            rounds = []
            for _ in range(args.repeats):
                fast, a = timed(store, rollup_sql.replace("{db}", store.database), args.runs)
                slow, b = timed(store, raw_sql.replace("{db}", store.database), max(3, args.runs // 5))
                assert a == b, f"{name}: rollup and raw answers differ"
                rounds.append({"rollup_p50": pct(fast, 0.5), "rollup_p95": pct(fast, 0.95),
                               "raw_p50": pct(slow, 0.5), "raw_p95": pct(slow, 0.95)})
            results.append({"query": name, "rounds": rounds})
        store.close()
    report = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "raw_events": raw_rows,
              "rollup_rows": rollup_rows, "load_seconds": round(load_s, 1),
              "machine": f"{platform.machine()}, {platform.python_version()}, 2 cores",
              "runs": args.runs, "repeats": args.repeats, "results": results}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"queries-{report['at'].replace(':', '')}.json").write_text(json.dumps(report, indent=2))
    print(f"{raw_rows:,} raw events, {rollup_rows:,} rollup rows, loaded in {load_s:.0f} s\n")
    print("| query | rollup p50 ms | rollup p95 ms (spread over rounds) | raw p95 ms | raw / rollup |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        p50 = statistics.median(x["rollup_p50"] for x in r["rounds"])
        p95s = [x["rollup_p95"] for x in r["rounds"]]
        raw95 = statistics.median(x["raw_p95"] for x in r["rounds"])
        print(f"| {r['query']} | {p50:.1f} | {statistics.median(p95s):.1f} "
              f"({min(p95s):.1f}–{max(p95s):.1f}) | {raw95:.0f} | "
              f"{raw95 / statistics.median(p95s):.0f}× |")


if __name__ == "__main__":
    main()

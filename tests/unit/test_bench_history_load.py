"""bench/history_load.py's store-built rollups are the worker's, key by key, so its cost is
the cost of the same answer (docs/bench.md, tenth pass)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from bench.budget import bulk, product_fold
from bench.history_load import accepted_lines, rollups_from_events
from bench.pipeline import event_lines
from hotspots.contract import MEASURES
from hotspots.settings import WorkerSettings
from sinks.landing import EVENTS
from streams.rollup import RollupKey


def test_rollups_built_from_the_raw_events_are_the_worker_s(store) -> None:
    # Ten years no other test writes, so weeks straddle months and London's clock changes.
    records = bulk(event_lines(3000, 7, date(1985, 1, 1), 3650, "histunit"), 250)
    worker = {name: state for group in product_fold(records).values()
              for name, state in group["k"].items()}
    admission, now = WorkerSettings().admission(), datetime.now(UTC)
    # No merge may remove the duplicate below before the build: only FINAL must.
    store.command(f"SYSTEM STOP MERGES {store.database}.events")
    try:
        for offset, value in enumerate(records):
            lines = accepted_lines(value, 0, offset, admission, now)
            store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
            if offset == 3:  # a record read twice, as after a crash
                store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
        store.command(rollups_from_events("startsWith(event_id, 'histunit-')").format(db=store.database))
    finally:
        store.command(f"SYSTEM START MERGES {store.database}.events")
    rows = store.query(f"""SELECT period, res, cell, period_start, kind, seq, {", ".join(MEASURES)}
                           FROM {{db}}.rollups FINAL
                           WHERE period_start BETWEEN '1984-12-01' AND '1995-01-31'""")
    built = {RollupKey(r["period"], r["res"], r["cell"], r["period_start"], r["kind"]).encode():
             [r["seq"], *(r[m] for m in MEASURES)] for r in rows}
    assert sum(state[0] for state in worker.values()) == 3000 * 7  # weekly, monthly x 3 res, daily
    assert built == worker

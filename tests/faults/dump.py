"""`python -m tests.faults.dump DATA_DIR FROM TO TAG OUT`: the store's view of one replay.

Run as its own process with the sink stopped, since chDB lets one process open a store.
Writes JSON lines: one ["rollup", period, res, cell, start, kind, *measures] per rollup row
read with FINAL whose period starts in [FROM, TO], then one ["event", event_id] per row of
the raw events table, read with FINAL, whose id starts with TAG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h3
import orjson

from hotspots.settings import SinkSettings
from sinks.store import Store
from tests.faults.replay import MEASURES


def main(data_dir: str, start: str, end: str, tag: str, out: str) -> None:
    store = Store(SinkSettings(data_dir=Path(data_dir)))
    try:
        # Plain row tuples, not Store.query's dicts: a full run holds millions of rows.
        rollups = store.client.query(
            f"SELECT period, res, cell, period_start, kind, {', '.join(MEASURES)} "
            f"FROM {store.database}.rollups FINAL WHERE period_start BETWEEN %(start)s AND %(end)s",
            parameters={"start": start, "end": end}).result_rows
        events = store.client.query(
            f"SELECT event_id FROM {store.database}.events FINAL WHERE startsWith(event_id, %(tag)s)",
            parameters={"tag": tag}).result_rows
    finally:
        store.close()
    with open(out, "wb") as fh:
        for period, res, cell, start_day, kind, *sums in rollups:
            fh.write(orjson.dumps(["rollup", period, int(res), h3.int_to_str(int(cell)),
                                   start_day.isoformat(), kind, *(int(v) for v in sums)]) + b"\n")
        for (event_id,) in events:
            fh.write(orjson.dumps(["event", event_id]) + b"\n")


if __name__ == "__main__":
    main(*sys.argv[1:6])

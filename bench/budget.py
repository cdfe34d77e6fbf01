"""Where an event's CPU goes in the worker, and what a columnar fold would cost (offline).

Issue #7's throughput target is a quarter of a bare loop that only decodes each event's JSON:
about 9 µs of wall time an event end to end, so about 18 µs of CPU on two cores for the
producer, broker, worker, spike alerts and sink together. This measures, on the pipeline
bench's own events (``bench.pipeline.event_lines``) and without a broker, how much of that each
piece of the worker's per-event work costs, and what a columnar fold of the same bulk records
would cost:

* ``decode``: ``orjson.loads`` of each line, the bare loop's work (the baseline);
* ``parse``: the contract's pydantic model of each line (``hotspots.contract.parse_event``);
* ``admit``: the same with the worker's admission checks (clock, area);
* ``fold``: the worker's per-event fold (admit, cells, digest, then the worker's own
  ``streams.rollup.RollupFold``: the rollup groups folded into a dict, the keys to send,
  the accepted line), without Kafka or faust;
* ``columnar deltas``: one or 40 bulk records at a time decoded whole by Arrow's JSON reader,
  cells looked up once per distinct point, London days, weeks and months computed on
  columns, the deltas of the worker's rollup keys (weekly and monthly at every resolution,
  daily at 6) grouped by Arrow, and the accepted rows written as one Arrow IPC stream. It has
  *no* validation beyond Arrow's typed parse, only a set for duplicate ids and no state: a
  floor for that design, not a working path;
* ``columnar with state``: the same, with each fold's deltas added to per-key states in
  Python dicts, as the worker keeps them.

Rounds are interleaved so the machine's load hits every stage alike; the best round of each
is reported, with each stage's ratio to ``decode``. ``python -m bench.budget``.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from bench.pipeline import RESULTS, event_lines, machine
from hotspots.contract import content_digest, parse_event
from hotspots.geo import RESOLUTIONS, cells_of
from hotspots.heap import Heap
from hotspots.settings import WorkerSettings
from streams.rollup import RollupFold, position

MEASURE_COLUMNS = ("charged", "executed", "weapons_count", "drugs_grams", "cash_gbp", "people",
                   "sentence_months")
LONDON = pa.timestamp("s", tz="Europe/London")
PERIOD_KEYS = [("week", res) for res in RESOLUTIONS] + [("month", res) for res in RESOLUTIONS] + [
    ("day", 6)]


def per_line(lines: list[bytes], step: Callable[[bytes], Any]) -> None:
    for raw in lines:
        step(raw)


def product_fold(records: list[bytes]) -> dict[str, Any]:
    """The per-event work of ``streams.app``'s fold, on bulk records of one partition, with
    the worker's collector settling after each chunk of ``fold_events``."""
    settings = WorkerSettings()
    admission = settings.admission()
    heap = Heap()
    folded = 0
    now = datetime.now(UTC)
    groups: dict[str, Any] = {}
    seen: dict[str, list[Any]] = {}
    rows: list[bytes] = []
    folding = RollupFold(groups)
    for offset, value in enumerate(records):
        for index, raw in enumerate(value.split(b"\n")):
            ev = admission.admit(raw, now)
            cells = cells_of(ev.lat, ev.lon)
            pos = position(offset, index)
            seen[ev.event_id] = [0, pos, content_digest(ev)]
            rows.append(folding.add(ev, cells, 0, pos, raw))
            folded += 1
            if folded % settings.fold_events == 0:
                rows.clear()  # written and acknowledged by now in the worker
                folding = RollupFold(groups)
                heap.settle()
    return groups


def columnar_fold(records: list[bytes], per_fold: int, keep_state: bool = True) -> dict[str, list[float]]:
    """The rollup states of bulk records folded ``per_fold`` records at a time on columns
    (see the module doc): ``{key name: [count, *sums]}``, names as the worker's. Without
    ``keep_state`` each fold's deltas stay columns (for a store that sums them) and none
    are returned."""
    cells_by_point: dict[tuple[float, float], dict[int, int]] = {}
    seen: set[str] = set()
    states: dict[str, list[float]] = {}
    for i in range(0, len(records), per_fold):
        value = b"\n".join(records[i:i + per_fold])
        table = pj.read_json(io.BytesIO(value)).combine_chunks()
        ids = table["event_id"].to_pylist()  # a redelivery's check, as the worker's index
        if seen.intersection(ids):
            raise ValueError("a duplicate: the bench's events have none")
        seen.update(ids)
        at = table["occurred_at"]  # Arrow's reader turns ISO 8601 with an offset into UTC
        if pa.types.is_string(at.type):
            at = pc.cast(at, pa.timestamp("s", tz="UTC"))
        elif at.type.tz is None:
            at = pc.assume_timezone(at, "UTC")
        local = pc.local_timestamp(pc.cast(at, LONDON))
        columns: dict[str, Any] = {
            "kind": table["kind"], "day": pc.floor_temporal(local, unit="day"),
            "week": pc.floor_temporal(local, unit="week", week_starts_monday=True),
            "month": pc.floor_temporal(local, unit="month")}
        points = table["lat"].to_numpy() + 1j * table["lon"].to_numpy()
        distinct, codes = np.unique(points, return_inverse=True)
        found = []
        for point in distinct.tolist():
            key = (point.real, point.imag)
            cells = cells_by_point.get(key)
            if cells is None:
                cells = cells_by_point[key] = cells_of(*key)
            found.append(cells)
        for res in RESOLUTIONS:
            by_code = pa.array([c[res] for c in found], pa.uint64())
            columns[f"cell{res}"] = pc.take(by_code, pa.array(codes))
        for name in MEASURE_COLUMNS:  # every one, so a state's places do not depend on the batch
            columns[name] = (pc.fill_null(pc.cast(table[name], pa.float64()), 0.0)
                             if name in table.column_names else pa.repeat(0.0, len(table)))
        sums = [(name, "sum") for name in MEASURE_COLUMNS]
        rows = pa.table(columns)
        for period, res in PERIOD_KEYS:
            deltas = rows.group_by([f"cell{res}", period, "kind"]).aggregate(
                [("kind", "count"), *sums])
            if not keep_state:
                continue
            keys = zip(deltas[f"cell{res}"].to_pylist(),
                       pc.strftime(deltas[period], "%Y-%m-%d").to_pylist(),
                       deltas["kind"].to_pylist(), strict=True)
            amounts = zip(*(deltas[f"{name}_sum"].to_pylist() for name, _ in sums), strict=True)
            for (cell, start, kind), count, more in zip(keys, deltas["kind_count"].to_pylist(),
                                                         amounts, strict=True):
                name = f"{period}|{res}|{cell}|{start}|{kind}"
                state = states.get(name)
                if state is None:
                    state = states[name] = [0.0] * (len(MEASURE_COLUMNS) + 1)
                state[0] += count
                for j, amount in enumerate(more, 1):
                    state[j] += amount
        accepted_rows = rows.append_column("event_id", table["event_id"])
        with pa.ipc.new_stream(io.BytesIO(), accepted_rows.schema,
                               options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
            writer.write_table(accepted_rows)
    return states


def bulk(lines: list[bytes], size: int) -> list[bytes]:
    return [b"\n".join(lines[i:i + size]) for i in range(0, len(lines), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bulk", type=int, default=500, help="events per bulk record")
    parser.add_argument("--per-fold", type=int, default=40,
                        help="bulk records a columnar fold takes at once (40: the worker's 20,000 events)")
    args = parser.parse_args()
    lines = event_lines(args.events, 1, date(2015, 1, 1), 3650, "budget")
    records = bulk(lines, args.bulk)
    admission = WorkerSettings().admission()
    now = datetime.now(UTC)
    stages: dict[str, Callable[[], Any]] = {
        "decode": lambda: per_line(lines, orjson.loads),
        "parse": lambda: per_line(lines, parse_event),
        "admit": lambda: per_line(lines, lambda raw: admission.admit(raw, now)),
        "fold": lambda: product_fold(records),
        "columnar deltas, 1 record a fold": lambda: columnar_fold(records, 1, keep_state=False),
        f"columnar deltas, {args.per_fold} records a fold": lambda: columnar_fold(
            records, args.per_fold, keep_state=False),
        f"columnar with state, {args.per_fold} records a fold": lambda: columnar_fold(
            records, args.per_fold),
    }
    for run in stages.values():  # warm the caches (cells, weeks) as a long-running worker has
        run()
    best = {name: float("inf") for name in stages}
    for _ in range(args.rounds):
        for name, run in stages.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], (time.process_time() - start) / args.events * 1e6)
    print(f"{args.events:,} events, bulk records of {args.bulk}, best of {args.rounds} rounds")
    print("| stage | CPU µs an event | × decode |\n|---|---:|---:|")
    for name, us in best.items():
        print(f"| {name} | {us:.2f} | {us / best['decode']:.1f} |")
    out = RESULTS / f"budget-{datetime.now(UTC):%Y-%m-%dT%H%M%S%z}.json"
    out.write_text(json.dumps({"machine": machine(), "events": args.events, "bulk": args.bulk,
                               "per_fold": args.per_fold, "rounds": args.rounds,
                               "us_per_event": best}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()

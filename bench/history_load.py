"""A history load without per-event state: the rollups built by the store (a design experiment).

    python -m bench.history_load [--events 1000000] [--runs 1] [--admission python|sql]

Issue #7 asks for ten years of national data (70M events) in an hour on two cores. The
worker keeps every rollup key's state in Python and writes it to Kafka twice (changelog,
rollups topic); a 10-year replay touches each key about once, so that state costs as much
as the events (docs/bench.md, ninth pass). This measures the other way round, on the same
broker, events and producer as ``bench.pipeline``:

* the product's bulk producer replays N events (``bench.pipeline.event_lines``) to a topic
  of their own, while
* a loader process (an aiokafka ``getmany`` loop, like the bare loop) checks each line with
  the worker's admission (the contract's validation), makes its accepted line
  (``streams.rollup.accepted_row``, the worker's cells, days and measures) and hands a few
  records' lines at a time to the raw ``events`` table through the sink's landing table,
  which ClickHouse parses (``sinks.landing``);
* once every event is loaded, the store builds the rollups of every key from
  ``events FINAL`` in one statement, by the rules ``sinks.reconcile`` checks
  (:func:`rollups_from_events`). The clock stops there.

With ``--admission sql`` (docs/bench.md, eleventh pass) the producer only frames the lines
(:func:`frame`), the loader lands each record as it came, and ClickHouse checks the lines a
chunk at a time (``sinks.admission_sql``), leaving the lines it is not sure of to the
Python admission (:func:`check_chunk`).

Baseline: the bare loop over the same topic, in the same run. Afterwards the rollups must
count exactly N events by kind, and reconcile must find no drift.

Why it would be exact: the raw table keeps one row per event (``ReplacingMergeTree`` on
its key, read with FINAL), so a record read twice after a crash adds nothing, and rollups
built from it are right by construction. What it gives up, and what a product path would
need, is in docs/bench.md (tenth pass): no duplicate-conflict check across records, no
spike baselines, and the live worker must not fold the same periods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import queue
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.pipeline import (
    RESULTS,
    bare_loop,
    cpu_seconds,
    event_lines,
    expected_by_kind,
    from_the_start,
    machine,
    produce,
)
from hotspots import accepted as accepted_topic
from hotspots import stack
from hotspots.contract import BULK_CONTENT_TYPE, CONTRACT_VERSION, MEASURES, Event, InvalidEvent, dead_letter
from hotspots.geo import cells_of
from hotspots.settings import ProducerSettings, SinkSettings, WorkerSettings
from sinks import admission_sql
from sinks.landing import EVENTS
from sinks.reconcile import key_rules, reconcile
from sinks.store import Store, rowbinary_string
from streams.app import where
from streams.rollup import accepted_row, position

_SUMS = ", ".join(f"sum({m})" for m in MEASURES)


def rollups_from_events(where: str = "1") -> str:
    """The statement that writes every rollup key's full state from the raw events (those
    matching ``where``), as the worker's fold would leave it: its measures' sums, and seq =
    its number of events (the worker's first state slot). ``{db}`` is left to fill in.

    One GROUP BY per (period, resolution), by the rules reconcile checks: a third less CPU
    than one GROUP BY over every event's keys array-joined (eleventh pass), the same rows."""
    parts = [f"""SELECT '{period}', {res}, kind, {start} AS start, cell{res}, {_SUMS}, count()
                 FROM {{db}}.events FINAL
                 WHERE ({where}){" AND time_precision != 'month'" if needs_day else ""}
                 GROUP BY kind, start, cell{res}"""
             for period, res, start, needs_day in key_rules()]
    return (f"INSERT INTO {{db}}.rollups (period, res, kind, period_start, cell, "
            f"{', '.join(MEASURES)}, seq)\n" + "\nUNION ALL\n".join(parts))


# The build's rows have distinct keys (one GROUP BY per (period, resolution)), so the
# replacing merge that an insert runs on its own block finds nothing to replace; skipping it
# halves the build's CPU (9.6 against 4.2 µs an event, twelfth pass). A key written twice
# would still be one row to every reader: they read rollups with FINAL.
BUILD_SETTINGS = {"optimize_on_insert": 0}


def build_rollups(store: Store, where: str = "1") -> None:
    """Write every rollup key's state from the raw events matching ``where``."""
    store.command(rollups_from_events(where).format(db=store.database), settings=BUILD_SETTINGS)

LAND_EVERY = 40  # records (of 500 events) a landing insert takes: the worker's 20,000-event fold


def accepted_line(event: Event, raw: bytes, partition: int, offset: int, index: int) -> bytes:
    """The worker's accepted line of an event, with its place (partition, position)."""
    place = (partition, position(offset, index))
    return accepted_topic.line(accepted_row(event, cells_of(event.lat, event.lon), place), raw)


def accepted_lines(value: bytes, partition: int, offset: int, admission: Any, now: datetime) -> list[bytes]:
    """A bulk record's accepted lines; raises InvalidEvent on a line the contract refuses
    (the experiment's events are all valid: a product path would dead-letter it)."""
    return [accepted_line(admission.admit(raw, now), raw, partition, offset, index)
            for index, raw in enumerate(value.split(b"\n"))]


async def _batches(bootstrap: str, topic: str, partitions: int) -> AsyncIterator[list[tuple[int, Any]]]:
    """The topic's records from the start, one getmany at a time, as (partition, record)."""
    async with from_the_start(bootstrap, topic, partitions) as consumer:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=LAND_EVERY)
            yield [(tp.partition, record) for tp, got in batches.items() for record in got]


def _is_bulk(record: Any) -> bool:
    return dict(record.headers or ()).get("content-type") == BULK_CONTENT_TYPE.encode()


async def _load(bootstrap: str, topic: str, partitions: int, expected: int, store: Store) -> None:
    admission = WorkerSettings().admission()
    now = datetime.now(UTC)
    loaded, records, lines = 0, 0, []
    async with aclosing(_batches(bootstrap, topic, partitions)) as batches:
        async for batch in batches:
            for partition, record in batch:
                if not _is_bulk(record):
                    raise ValueError("the experiment replays bulk records only")
                lines += accepted_lines(record.value, partition, record.offset, admission, now)
                records += 1
            if records >= LAND_EVERY or (lines and loaded + len(lines) >= expected):
                store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
                loaded += len(lines)
                lines, records = [], 0
                # A product loader would commit the offsets here: a crash before it reads
                # the records again, and the raw table keeps one row per event.
            if loaded >= expected:
                return


# ---------------------------------------------------------------- admission in the store
#
# The loader above checks each line in Python (~10 µs). This one lands each record as it
# came, then lets ClickHouse check a chunk of lines at a time (sinks.admission_sql): planning
# that statement takes most of a second, so it runs once a chunk. Lines it is not sure of go
# to the Python admission, which accepts them (the worker's path) or dead-letters them with
# their reason. The records are only a buffer: Kafka keeps them until the offsets are
# committed, after their chunk is checked, and events keeps one row per event, so a chunk
# checked twice after a crash adds nothing.

SQL_CHUNK = 500_000  # lines checked by one statement
# Run the two views of one check side by side. The buffer is a Memory table: each landing
# insert is a block of its own, which the check reads on both threads, and nothing is
# compressed or merged for rows that live one chunk (a MergeTree buffer cost 1.3 µs an event
# more, twelfth pass).
CHECK_SETTINGS = {**admission_sql.CELL_SETTINGS, "parallel_view_processing": 1}
_EVENT_COLUMNS = (*accepted_topic.FIELDS[:-1], "payload")  # all but src, the source position


def sql_schema(admission: Any) -> list[str]:
    """The loader's tables, ``{db}`` left to fill in (with str.replace: the checks hold braces)."""
    checked = admission_sql.accepted_select(
        admission, "SELECT 0 AS partition, 0 AS offset, 0 AS bulk, 0 AS line_index, '' AS line",
        passing="toUInt32(partition) AS partition, toUInt64(offset) AS offset, "
                "toUInt8(bulk) AS bulk, toUInt32(line_index) AS line_index")
    return [
        """CREATE TABLE IF NOT EXISTS {db}.load_records (partition UInt32, offset UInt64,
             bulk UInt8, value String) ENGINE = Memory""",
        """CREATE TABLE IF NOT EXISTS {db}.load_unsure (partition UInt32, offset UInt64, bulk UInt8,
             line_index UInt32, line String) ENGINE = MergeTree ORDER BY (partition, offset, line_index)""",
        # One check per line, two destinations: a Null table and a view for each.
        f"CREATE TABLE IF NOT EXISTS {{db}}.load_checked ENGINE = Null EMPTY AS {checked}",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.load_sure TO {{db}}.events AS
            SELECT {", ".join(_EVENT_COLUMNS)} FROM {{db}}.load_checked WHERE sure""",
        """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.load_not_sure TO {db}.load_unsure AS
           SELECT partition, offset, bulk, line_index, payload AS line
           FROM {db}.load_checked WHERE NOT sure""",
    ]


def check_chunk(store: Store, admission: Any, topic: str, now: datetime) -> int:
    """Check the lines of every landed record, decide the unsure ones in Python, and empty
    the buffer. Returns the number of lines dead-lettered."""
    db = store.database
    # A bulk record's blank lines are skipped, as the worker skips them.
    source = f"""SELECT partition, offset, bulk, toUInt32(i - 1) AS line_index, line FROM (
                   SELECT partition, offset, bulk,
                          if(bulk = 1, splitByChar('\\n', value), [value]) AS lines
                   FROM {db}.load_records)
                 ARRAY JOIN lines AS line, arrayEnumerate(lines) AS i
                 WHERE NOT (bulk = 1 AND match(line, '^[ \\t\\r\\x0b\\x0c]*$'))"""
    checked = admission_sql.accepted_select(admission, source,
                                            passing="partition, offset, bulk, line_index")
    store.command(f"INSERT INTO {db}.load_checked {checked}", settings=CHECK_SETTINGS)
    lines: list[bytes] = []
    letters: list[dict[str, Any]] = []
    # In hex: the bytes as they came, even those that are not UTF-8.
    for row in store.query("SELECT partition, offset, bulk, line_index, hex(line) AS line "
                           "FROM {db}.load_unsure"):
        raw = bytes.fromhex(row["line"])
        try:
            event = admission.admit(raw, now)
        except InvalidEvent as exc:
            origin = where(f"{topic}[{row['partition']}]@{row['offset']}", row["bulk"], row["line_index"])
            letters.append(dead_letter(raw, exc.reason, exc.detail, origin))
            continue
        lines.append(accepted_line(event, raw, row["partition"], row["offset"], row["line_index"]))
    if lines:
        store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
    if letters:
        store.insert("dead_letters", [list(letter.values()) for letter in letters], list(letters[0]))
    # A product loader would commit the offsets here, then empty the buffer.
    store.command(f"TRUNCATE TABLE {db}.load_records")
    store.command(f"TRUNCATE TABLE {db}.load_unsure")
    return len(letters)


def _rowbinary(partition: int, offset: int, bulk: bool, value: bytes) -> bytes:
    """One load_records row in RowBinary: the record's bytes need no escaping."""
    return b"".join((partition.to_bytes(4, "little"), offset.to_bytes(8, "little"),
                     b"\x01" if bulk else b"\x00", rowbinary_string(value)))


async def _load_sql(bootstrap: str, topic: str, partitions: int, expected: int, store: Store) -> None:
    admission = WorkerSettings().admission()
    for statement in sql_schema(admission):  # the checks hold braces: no str.format
        store.command(statement.replace("{db}", store.database))
    now = datetime.now(UTC)
    landed, unchecked = 0, 0
    async with aclosing(_batches(bootstrap, topic, partitions)) as batches:
        async for batch in batches:
            body = []
            for partition, record in batch:
                bulk = _is_bulk(record)
                body.append(_rowbinary(partition, record.offset, bulk, record.value))
                lines = record.value.count(b"\n") + 1 if bulk else 1
                landed += lines
                unchecked += lines
            if body:
                store.insert_raw("load_records", ("partition", "offset", "bulk", "value"), b"".join(body),
                                 "RowBinary")
            if unchecked and (landed >= expected or unchecked >= SQL_CHUNK):
                check_chunk(store, admission, topic, now)
                unchecked = 0
            if landed >= expected:
                return


def loader(bootstrap: str, topic: str, partitions: int, expected: int, data_dir: str,
           out: Any, admission: str = "python") -> None:
    """The loader process: load, build the rollups; put "ready", then (loaded at, built at,
    CPU seconds, events counted by kind, reconcile ok) on ``out``."""
    store = Store(SinkSettings(data_dir=Path(data_dir), clickhouse_url=None, database="history"))
    out.put("ready")
    cpu = time.process_time()
    load = _load_sql if admission == "sql" else _load
    asyncio.run(load(bootstrap, topic, partitions, expected, store))
    loaded_at = time.time()
    build_rollups(store)
    built_at = time.time()
    cpu = time.process_time() - cpu
    rows = store.query("SELECT kind, sum(count) AS n FROM {db}.rollups FINAL "
                       "WHERE period = 'month' AND res = 6 GROUP BY kind")
    check = reconcile(store)
    store.close()
    out.put((loaded_at, built_at, cpu, {r["kind"]: int(r["n"]) for r in rows}, check["ok"]))


def _next(proc: Any, out: Any, timeout: float) -> Any:
    """The loader's next message; an error as soon as the loader has died instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return out.get(timeout=2)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the loader exited with code {proc.exitcode}") from None
    raise TimeoutError(f"no word from the loader in {timeout:.0f} s")


def frame(config: stack.StackConfig, lines: list[bytes], bulk: int) -> float:
    """A replay file's lines sent as they are, ``bulk`` to a record (the product's bulk
    content type, partitions in turn), with the product producer's settings; seconds taken.
    Nothing is checked here: the loader's admission does that, for every line."""
    from producers.publisher import kafka_producer

    settings = ProducerSettings(bootstrap=config.bootstrap, topic_prefix=config.topic_prefix)
    producer = kafka_producer(settings)
    headers = [("contract", f"v{CONTRACT_VERSION}".encode()), ("content-type", BULK_CONTENT_TYPE.encode()),
               ("source", b"bench")]
    started = time.perf_counter()
    partitions = len(producer.partitions_for(settings.events_topic) or ())
    futures = []
    for n, first in enumerate(range(0, len(lines), bulk)):
        futures.append(producer.send(settings.events_topic, value=b"\n".join(lines[first:first + bulk]),
                                     partition=n % partitions, headers=headers))
    producer.flush(timeout=600)
    producer.close()
    acked = sum(min(bulk, len(lines) - i * bulk) for i, f in enumerate(futures) if f.succeeded())
    assert acked == len(lines), (acked, len(lines))
    return time.perf_counter() - started


def one_run(n: int, partitions: int, seed: int, bulk: int, admission: str = "python") -> dict[str, Any]:
    lines = event_lines(n, seed, date(2015, 1, 1), 3652, f"history{seed}")
    with (tempfile.TemporaryDirectory(prefix="hotspots-history-") as tmp,
          stack.throwaway(Path(tmp), "history", partitions) as config):
        for name in ("worker", "spikes", "sink"):  # the broker alone: nothing else reads
            stack.stop_service(config, name)
        topic = ProducerSettings(topic_prefix=config.topic_prefix).events_topic
        spawn = mp.get_context("spawn")  # chDB opens its store in the loader only
        out: Any = spawn.Queue()
        proc = spawn.Process(
            target=loader,
            args=(config.bootstrap, topic, partitions, n, str(Path(tmp) / "store"), out, admission))
        proc.start()
        if _next(proc, out, 300) != "ready":  # the loader's imports and store: not timed
            raise RuntimeError("the loader did not start")
        broker_cpu = cpu_seconds(config, "broker")
        started = time.time()
        producer_cpu = time.process_time()
        produced = (frame if admission == "sql" else produce)(config, lines, bulk)
        producer_cpu = (time.process_time() - producer_cpu) / n * 1e6
        loaded_at, built_at, loader_cpu, counted, reconciled = _next(proc, out, 3600)
        broker_cpu = (cpu_seconds(config, "broker") - broker_cpu) / n * 1e6
        proc.join(60)
        expected = expected_by_kind(lines)
        if counted != expected or not reconciled:
            raise AssertionError(f"inexact: counted {counted}, expected {expected}; reconcile {reconciled}")
        bare_cpu = time.process_time()
        baseline = bare_loop(config, n)
        bare_cpu = (time.process_time() - bare_cpu) / n * 1e6
        elapsed = built_at - started
        return {"events": n, "bulk": bulk, "partitions": partitions, "admission": admission,
                "history_eps": n / elapsed, "history_seconds": elapsed,
                "load_seconds": loaded_at - started, "build_seconds": built_at - loaded_at,
                "producer_eps": n / produced, "baseline_eps": baseline,
                "ratio": n / elapsed / baseline, "counted": sum(counted.values()),
                "loader_cpu_us": loader_cpu / n * 1e6, "producer_cpu_us": producer_cpu,
                "broker_cpu_us": broker_cpu,
                "bare_cpu_us": bare_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bulk", type=int, default=500)
    parser.add_argument("--admission", choices=("python", "sql"), default="python",
                        help="python: the loader checks each line (the product producer checks "
                             "them too); sql: the store checks them, and the producer only frames")
    args = parser.parse_args()
    runs = [one_run(args.events, args.partitions, seed, args.bulk, args.admission)
            for seed in range(1, args.runs + 1)]
    for key in ("history_eps", "baseline_eps", "ratio", "load_seconds", "build_seconds",
                "loader_cpu_us", "producer_cpu_us", "broker_cpu_us", "bare_cpu_us"):
        values = [r[key] for r in runs]
        print(f"{key}: median {statistics.median(values):.4g} (spread {min(values):.4g}–{max(values):.4g})")
    out = RESULTS / f"history-load-{datetime.now(UTC):%Y-%m-%dT%H%M%S%z}.json"
    out.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()

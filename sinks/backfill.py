"""`hotspots backfill`: history from its own topic into the raw table, then the rollups of
the periods before the cutover, built by the store from that table.

Why a path of its own (docs/bench.md, tenth to twelfth passes): the worker keeps every
rollup key's state in Python and writes it to Kafka twice, and a replay of years touches
each key about once, so that state costs as much as the events. Here the store does the
work in bulk:

* the history topic's records land as they came in a buffer table, and the store checks
  their lines a chunk at a time by the contract (``sinks.admission_sql`` on chDB; on a
  ClickHouse server, whose version may lack its functions, the Python admission). The
  lines it is not sure of go to the Python admission, which accepts or refuses them with
  the worker's reasons. Accepted lines become rows of ``events``, refused ones rows of
  ``dead_letters``;
* accepted events the worker must have too (:class:`Split`: those with a key from the
  cutover on, and those of the spike agents' baseline weeks) are also forwarded to the live
  events topic;
* once the topic is read to the end it had when the backfill began, every rollup key whose
  period starts before its kind's first start from the cutover (``HOTSPOTS_CUTOVER``,
  :func:`hotspots.periods.first_starts`) is written from ``events FINAL``, with its full
  state. The live worker folds the periods from the cutover on, so each key has one writer.

Exactly once, across crashes: the group's offsets are committed only after a chunk's lines
are in ``events`` and ``dead_letters`` and its forwards are acknowledged. A crash before
that reads the chunk again; both tables keep one row per event (ReplacingMergeTree on the
event's key, read with FINAL) and per (reason, source), and the worker's seen table counts
a forward sent twice once. The build reads ``events FINAL``, where the sink's live events land
too, and writes whole states: running it again changes nothing, and it counts a late live
event of a period before the cutover once it runs again (``--build-only``); until then
``reconcile`` reports that key as drifted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from hotspots import accepted as accepted_topic
from hotspots.contract import (
    BULK_CONTENT_TYPE,
    CONTENT_TYPE,
    CONTRACT_VERSION,
    MEASURES,
    Event,
    InvalidEvent,
    bulks,
    dead_letter,
    where,
)
from hotspots.geo import cells_of, partition_key, partition_of, to_str
from hotspots.kafka_security import connect_failure, kafka_kwargs
from hotspots.periods import first_starts, local_date, start_of
from hotspots.settings import ProducerSettings, SinkSettings
from sinks import admission_sql
from sinks.landing import EVENTS
from sinks.reconcile import key_rules
from sinks.store import Store, rowbinary_string
from streams.rollup import MAX_PER_RECORD, accepted_row, position

log = logging.getLogger(__name__)
BULK = BULK_CONTENT_TYPE.encode()


class BackfillError(RuntimeError):
    """The backfill cannot start: what is missing, and what to do."""


# ------------------------------------------------------------------ the rollups' build

_SUMS = ", ".join(f"sum({m})" for m in MEASURES)


def rollups_from_events(where: str = "1", before: dict[str, date] | None = None) -> str:
    """The statement that writes rollup keys' full states from the raw events (those
    matching ``where``), as the worker's fold would leave them: the measures' sums, and
    seq = the number of events (the worker's first state slot). ``before`` keeps to the
    keys whose period starts before that kind's date. ``{db}`` is left to fill in.

    One GROUP BY per (period, resolution), by the rules reconcile checks: a third less CPU
    than one GROUP BY over every event's keys array-joined (eleventh pass), the same rows."""
    parts = []
    for period, res, start, needs_day in key_rules():
        conditions = [f"({where})"]
        if needs_day:
            conditions.append("time_precision != 'month'")
        if before is not None:
            conditions.append(f"{start} < toDate('{before[period].isoformat()}')")
        parts.append(f"""SELECT '{period}', {res}, kind, {start} AS start, cell{res}, {_SUMS}, count()
                 FROM {{db}}.events FINAL
                 WHERE {" AND ".join(conditions)}
                 GROUP BY kind, start, cell{res}""")
    return (f"INSERT INTO {{db}}.rollups (period, res, kind, period_start, cell, "
            f"{', '.join(MEASURES)}, seq)\n" + "\nUNION ALL\n".join(parts))


# The build's rows have distinct keys (one GROUP BY per (period, resolution)), so the
# replacing merge that an insert runs on its own block finds nothing to replace; skipping it
# halves the build's CPU (9.6 against 4.2 µs an event, twelfth pass). A key written twice
# would still be one row to every reader: they read rollups with FINAL.
BUILD_SETTINGS = {"optimize_on_insert": 0}


def build_rollups(store: Store, where: str = "1", before: dict[str, date] | None = None) -> None:
    """Write the states of the rollup keys of the raw events matching ``where`` (and, with
    ``before``, of the periods before those dates only)."""
    store.command(rollups_from_events(where, before).format(db=store.database), settings=BUILD_SETTINGS)


# ------------------------------------------------------------------ events the worker gets too
#
# A history event whose day (or, known to the month only, whose month) is on or after the
# cutover has keys that only the worker folds: the backfill lands it in events, for the
# build's keys of the same event (a week or month that began before the cutover), and
# forwards it to the live events topic, for the worker's. So are the events of the weeks
# before the cutover that the spike agents compare a week with (HOTSPOTS_BACKFILL_SPIKE_WEEKS):
# the worker folds none of their keys, and the spike agents, which read what it accepts,
# take events that old into their baselines only. The worker's seen table counts a forward
# sent again after a crash once; the sink lands it in events as the same row.


def has_live_key(event: Event, before: dict[str, date], day: date | None = None) -> bool:
    """Whether the worker folds any of the event's rollup keys (streams.rollup.rollup_keys);
    ``day``: its London date, when the caller has it."""
    day = day or local_date(event.occurred_at)
    if event.time_precision == "month":
        return start_of(day, "month") >= before["month"]
    return any(start_of(day, period) >= first for period, first in before.items())


def live_sql(before: dict[str, date]) -> str:
    """:func:`has_live_key` on a row with the events table's columns, by the build's rules."""
    conditions = []
    for period, _, start, needs_day in key_rules():
        condition = f"{start} >= toDate('{before[period].isoformat()}')"
        conditions.append(f"({condition} AND time_precision != 'month')" if needs_day else f"({condition})")
    return " OR ".join(dict.fromkeys(conditions))  # one per period: the resolutions repeat them


@dataclass(frozen=True)
class Split:
    """Where history goes: keys of periods before ``before`` (each kind's first period from
    the cutover) are built; events with a later key, and events known to the day from
    ``seed_from`` on (the spike baselines' weeks), are forwarded to the worker too."""

    before: dict[str, date]
    seed_from: date

    @classmethod
    def of(cls, cutover: date, spike_weeks: int = 0) -> Split:
        before = first_starts(cutover)
        if not spike_weeks:
            return cls(before, cutover)
        return cls(before, start_of(cutover, "week") - timedelta(weeks=spike_weeks))

    def forwards(self, event: Event) -> bool:
        day = local_date(event.occurred_at)
        return has_live_key(event, self.before, day) or (
            event.time_precision != "month" and day >= self.seed_from)

    def forwards_sql(self) -> str:
        """:meth:`forwards` on a row with the events table's columns."""
        return (f"{live_sql(self.before)} OR (time_precision != 'month' AND "
                f"toDate(occurred_at, 'Europe/London') >= toDate('{self.seed_from.isoformat()}'))")


# ------------------------------------------------------------------ checking the lines

def accepted_line(event: Event, raw: bytes, partition: int, offset: int, index: int) -> bytes:
    """The worker's accepted line of an event, with its place (partition, position)."""
    place = (partition, position(offset, index))
    return accepted_topic.line(accepted_row(event, cells_of(event.lat, event.lon), place), raw)


# Run the two views of one check side by side. The buffer is a Memory table: each landing
# insert is a block of its own, which the check reads on both threads, and nothing is
# compressed or merged for rows that live one chunk (a MergeTree buffer cost 1.3 µs an event
# more, twelfth pass). Kafka is the durable copy until the chunk's offsets are committed.
# As in the build, the insert into events skips the replacing merge of its own block: that
# merge more than doubled the insert's cost (2.2 against 0.9 µs a row, fourteenth pass), and
# every reader of events reads it with FINAL, as it must for rows of different inserts.
CHECK_SETTINGS = {**admission_sql.CELL_SETTINGS, "parallel_view_processing": 1, "optimize_on_insert": 0}
_EVENT_COLUMNS = (*accepted_topic.FIELDS[:-1], "payload")  # all but src, the source position
# The backfill's own tables are named ``<tables>_<name>``. On a server each run has its own
# (two runs at once must not check or empty each other's buffer); the embedded store is one
# process's, so there it is always "backfill" and a killed run's leftovers are replaced.
BUFFERS = ("records", "unsure", "live")
_VIEWS = ("sure", "not_sure", "to_live", "checked")


def sql_schema(admission: Any, split: Split, tables: str = "backfill") -> list[str]:
    """The backfill's tables, ``{db}`` left to fill in (with str.replace: the checks hold braces)."""
    checked = admission_sql.accepted_select(
        admission, "SELECT 0 AS partition, 0 AS offset, 0 AS bulk, 0 AS line_index, '' AS line",
        passing="toUInt32(partition) AS partition, toUInt64(offset) AS offset, "
                "toUInt8(bulk) AS bulk, toUInt32(line_index) AS line_index")
    t = f"{{db}}.{tables}_"
    return [
        f"""CREATE TABLE IF NOT EXISTS {t}records (partition UInt32, offset UInt64,
             bulk UInt8, value String) ENGINE = Memory""",
        f"""CREATE TABLE IF NOT EXISTS {t}unsure (partition UInt32, offset UInt64, bulk UInt8,
             line_index UInt32, line String) ENGINE = MergeTree ORDER BY (partition, offset, line_index)""",
        f"""CREATE TABLE IF NOT EXISTS {t}live (partition UInt32, offset UInt64, bulk UInt8,
             line_index UInt32, cell6 UInt64, line String) ENGINE = Memory""",
        # One check per line, three destinations: a Null table and a view for each. The
        # checks change with the contract: built again on every start (see start_sql).
        f"CREATE TABLE {t}checked ENGINE = Null EMPTY AS {checked}",
        f"""CREATE MATERIALIZED VIEW {t}sure TO {{db}}.events AS
            SELECT {", ".join(_EVENT_COLUMNS)} FROM {t}checked WHERE sure""",
        f"""CREATE MATERIALIZED VIEW {t}not_sure TO {t}unsure AS
           SELECT partition, offset, bulk, line_index, payload AS line FROM {t}checked WHERE NOT sure""",
        f"""CREATE MATERIALIZED VIEW {t}to_live TO {t}live AS
            SELECT partition, offset, bulk, line_index, cell6, payload AS line
            FROM {t}checked WHERE sure AND ({split.forwards_sql()})""",
    ]


def start_sql(store: Store, admission: Any, split: Split, tables: str = "backfill") -> None:
    """The backfill's tables, the checks and the cutover made afresh, the buffers empty (a
    crashed run's rows there were never committed: Kafka gives them again)."""
    drop_sql(store, tables)
    for statement in sql_schema(admission, split, tables):
        store.command(statement.replace("{db}", store.database))


def drop_sql(store: Store, tables: str) -> None:
    for name in (*_VIEWS, *BUFFERS):
        store.command(f"DROP TABLE IF EXISTS {store.database}.{tables}_{name}")


Forward = tuple[bytes, bytes]  # (key, the line as it came)


def check_chunk(store: Store, admission: Any, topic: str, now: datetime,
                split: Split, tables: str = "backfill") -> tuple[int, list[Forward]]:
    """Check the lines of every landed record, decide the unsure ones in Python, and empty
    the buffer. Returns the number of lines dead-lettered, and the accepted lines the
    worker must have too (:meth:`Split.forwards`)."""
    t = f"{store.database}.{tables}_"
    # A bulk record's blank lines are skipped, as the worker skips them.
    source = f"""SELECT partition, offset, bulk, toUInt32(i - 1) AS line_index, line FROM (
                   SELECT partition, offset, bulk,
                          if(bulk = 1, splitByChar('\\n', value), [value]) AS lines
                   FROM {t}records)
                 ARRAY JOIN lines AS line, arrayEnumerate(lines) AS i
                 WHERE NOT (bulk = 1 AND match(line, '^[ \\t\\r\\x0b\\x0c]*$'))"""
    checked = admission_sql.accepted_select(admission, source,
                                            passing="partition, offset, bulk, line_index")
    store.command(f"INSERT INTO {t}checked {checked}", settings=CHECK_SETTINGS)
    chunk = Chunk()
    # In hex: the bytes as they came, even those that are not UTF-8.
    for row in store.query(f"SELECT partition, offset, bulk, line_index, hex(line) AS line FROM {t}unsure"):
        _admit(chunk, admission, bytes.fromhex(row["line"]), topic, row["partition"], row["offset"],
               bool(row["bulk"]), row["line_index"], now, split)
    for row in store.query(f"SELECT cell6, hex(line) AS line FROM {t}live"):
        chunk.forward.append((to_str(row["cell6"]).encode(), bytes.fromhex(row["line"])))
    _write(store, chunk.lines, chunk.letters)
    for name in BUFFERS:
        store.command(f"TRUNCATE TABLE {t}{name}")
    return len(chunk.letters), chunk.forward


def _admit(chunk: Chunk, admission: Any, raw: bytes, topic: str, partition: int, offset: int,
           bulk: bool, index: int, now: datetime, split: Split) -> None:
    """One line by the Python admission into the chunk: its accepted line (and its forward
    when the worker must have it too), or its dead letter."""
    origin = where(f"{topic}[{partition}]@{offset}", bulk, index)
    try:
        event = admission.admit(raw, now)
    except InvalidEvent as exc:
        chunk.letters.append(dead_letter(raw, exc.reason, exc.detail, origin))
        return
    chunk.lines.append(accepted_line(event, raw, partition, offset, index))
    if split.forwards(event):
        chunk.forward.append((partition_key(event.lat, event.lon), raw))


def _write(store: Store, lines: list[bytes], letters: list[dict[str, Any]]) -> None:
    if lines:
        store.insert_raw(EVENTS.table, EVENTS.column, b"\n".join(lines), EVENTS.fmt)
    if letters:
        store.insert("dead_letters", [list(letter.values()) for letter in letters], list(letters[0]))


def _rowbinary(partition: int, offset: int, bulk: bool, value: bytes) -> bytes:
    """One row of the records buffer in RowBinary: the record's bytes need no escaping."""
    return b"".join((partition.to_bytes(4, "little"), offset.to_bytes(8, "little"),
                     b"\x01" if bulk else b"\x00", rowbinary_string(value)))


# ------------------------------------------------------------------ the backfill


@dataclass
class Report:
    records: int = 0
    forwarded: int = 0  # accepted lines sent on to the worker too (Split.forwards)
    lines: int = 0  # read (the store's check counts a bulk record's blank lines too)
    dead_lettered: int = 0
    chunks: int = 0  # each ended by an offset commit
    load_seconds: float = 0.0
    build_seconds: float = 0.0
    # This process's CPU time in each (with the embedded store, the store's work too).
    load_cpu_seconds: float = 0.0
    build_cpu_seconds: float = 0.0
    check: str = ""  # "store" (admission_sql) or "python"
    cutover: str = ""
    built_before: dict[str, str] | None = None  # each period kind: keys starting before this
    forwarded_from: str = ""  # events known to the day from here on went to the worker too

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Chunk:
    """The records read since the last commit: what each check needs, and where each
    partition resumes once they are in the store."""

    def __init__(self) -> None:
        # Written to the store after each poll, committed only at the end of the chunk:
        self.body: list[bytes] = []  # rows of the records buffer (the store's check)
        self.lines: list[bytes] = []  # accepted lines (the Python check)
        self.letters: list[dict[str, Any]] = []
        self.dead = 0  # lines (or records) dead-lettered
        self.size = 0  # lines
        self.landed = 0  # lines written to the store so far
        self.forward: list[Forward] = []  # sent to the live events topic before the commit
        self.next: dict[TopicPartition, int] = {}


def backfill(store: Store, settings: SinkSettings, check: str = "auto", build_only: bool = False,
             echo: Callable[[str], object] = log.info, lines: int | None = None) -> Report:
    """Load the history topic to the end it has now, then build the rollups before the cutover.

    ``lines``: load until that many lines are in instead, wherever the topic's end was at the
    start (bench.history_load's producer is still writing)."""
    if settings.cutover is None:
        raise BackfillError(
            "HOTSPOTS_CUTOVER is not set: without it the live worker folds every period, and a "
            "build would give those keys two writers. Set it (a London date, YYYY-MM-DD) for the "
            "whole stack: the worker folds from it on, the backfill builds what came before.")
    if check == "auto":
        check = "store" if store.embedded else "python"
    split = Split.of(settings.cutover, settings.backfill_spike_weeks)
    before = split.before
    report = Report(check=check, cutover=settings.cutover.isoformat(),
                    built_before={k: v.isoformat() for k, v in before.items()},
                    forwarded_from=split.seed_from.isoformat())
    started, cpu = time.monotonic(), time.process_time()
    if not build_only:
        _load(store, settings, check, report, echo, lines, split)
    report.load_seconds = time.monotonic() - started
    report.load_cpu_seconds = time.process_time() - cpu
    started, cpu = time.monotonic(), time.process_time()
    build_rollups(store, before=before)
    report.build_seconds = time.monotonic() - started
    report.build_cpu_seconds = time.process_time() - cpu
    echo(f"built the rollups of the periods before {before['day']} (days), {before['week']} "
         f"(weeks), {before['month']} (months) in {report.build_seconds:.1f} s")
    return report


def _consumer(settings: SinkSettings) -> KafkaConsumer:
    try:
        return KafkaConsumer(**kafka_kwargs(settings), group_id=settings.backfill_group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=settings.backfill_poll_records)
    except KafkaError as exc:
        raise BackfillError(connect_failure(settings, exc)) from None


def _load(store: Store, settings: SinkSettings, check: str, report: Report,
          echo: Callable[[str], object], lines: int | None, split: Split) -> None:
    topic = settings.history_topic
    admission = settings.admission()
    tables = "backfill" if store.embedded else f"backfill_{uuid.uuid4().hex[:12]}"
    if check == "store":
        start_sql(store, admission, split, tables)
    consumer = _consumer(settings)
    forwarder = Forwarder(settings)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise BackfillError(f"no topic {topic} on {settings.bootstrap}: produce the history "
                                "there first (`hotspots produce jsonl --history`, "
                                "`hotspots replay police-uk --history`)")
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        # One loader reads every partition (no group rebalancing); the group keeps its place.
        consumer.assign(parts)
        end = consumer.end_offsets(parts)
        todo = {tp: end[tp] - consumer.position(tp) for tp in parts}
        echo(f"{topic}: {sum(todo.values())} records to load up to offsets "
             f"{ {tp.partition: end[tp] for tp in parts} }")
        chunk = Chunk()
        now = datetime.now(UTC)  # the future_timestamp check's clock, as in a worker fold

        def done() -> bool:
            if lines is not None:
                return report.lines + chunk.size >= lines
            return all(consumer.position(tp) >= end[tp] for tp in parts)

        while not done():
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    _take(chunk, record, check, admission, topic, now, split)
                    chunk.next[tp] = record.offset + 1
                    report.records += 1
                    if chunk.size - chunk.landed >= LAND_LINES:
                        _land(store, chunk, tables)
            _land(store, chunk, tables)
            if chunk.next and (chunk.size >= settings.backfill_chunk or done()):
                if check == "store":
                    dead, forward = check_chunk(store, admission, topic, now, split, tables)
                    chunk.dead += dead
                    chunk.forward += forward
                report.forwarded += forwarder.send(chunk.forward)
                # Only now: everything read up to these offsets is in the store or acknowledged.
                consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in chunk.next.items()})
                report.dead_lettered += chunk.dead
                report.lines += chunk.size
                report.chunks += 1
                echo(f"{report.records} records, {report.lines} lines loaded "
                     f"({report.dead_lettered} dead-lettered)")
                chunk = Chunk()
    finally:
        consumer.close(autocommit=False)
        forwarder.close()
        if check == "store":
            drop_sql(store, tables)


# Lines a landing insert takes. Each is a block of the Memory buffer, which the check reads
# on both threads: one block per poll of 500 bulk records (250,000 lines) cost the loader
# about 2 µs an event more (thirteenth pass).
LAND_LINES = 20_000


def _land(store: Store, chunk: Chunk, tables: str) -> None:
    """Write what the chunk holds so far; idempotent, so rewritten after a crash."""
    if chunk.body:
        store.insert_raw(f"{tables}_records", ("partition", "offset", "bulk", "value"),
                         b"".join(chunk.body), "RowBinary")
        chunk.body = []
    _write(store, chunk.lines, chunk.letters)
    chunk.dead += len(chunk.letters)
    chunk.lines, chunk.letters = [], []
    chunk.landed = chunk.size


def _take(chunk: Chunk, record: Any, check: str, admission: Any, topic: str, now: datetime,
          split: Split) -> None:
    """A record into the chunk: its rows for the store's check, or its lines checked here."""
    bulk = dict(record.headers or ()).get("content-type") == BULK
    value: bytes = record.value
    lines = value.split(b"\n") if bulk else [value]
    if len(lines) > MAX_PER_RECORD:  # positions hold 16 bits of line index, as the worker's
        chunk.letters.append(dead_letter(value, "bulk_too_large", f"{len(lines)} lines > {MAX_PER_RECORD}",
                                         f"{topic}[{record.partition}]@{record.offset}"))
        return
    if check == "store":
        chunk.body.append(_rowbinary(record.partition, record.offset, bulk, value))
        chunk.size += len(lines)
        return
    for index, raw in enumerate(lines):
        if bulk and not raw.strip():
            continue
        _admit(chunk, admission, raw, topic, record.partition, record.offset, bulk, index, now, split)
        chunk.size += 1


class Forwarder:
    """Sends accepted lines on to the live events topic as the product's bulk producer sends
    events (bulk records of one partition's events, by their cell's partition; acknowledged
    by every replica): the worker's cost is mostly per record. Connects on first use."""

    BULK = 500  # lines a record, as `hotspots replay police-uk`

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = ProducerSettings(bootstrap=settings.bootstrap, topic_prefix=settings.topic_prefix)
        self.producer: Any = None

    def send(self, forward: list[Forward]) -> int:
        """Send and wait for every acknowledgement; raises if any is refused."""
        if not forward:
            return 0
        from producers.publisher import BULK_BYTES, kafka_producer

        if self.producer is None:
            self.producer = kafka_producer(self.settings)
        topic = self.settings.events_topic
        partitions = len(self.producer.partitions_for(topic) or ())
        if not partitions:
            raise BackfillError(f"no topic {topic}: the worker's source, where the live events go")
        headers = [("contract", f"v{CONTRACT_VERSION}".encode()), ("source", b"backfill")]
        futures = []
        by_partition: dict[int, list[bytes]] = {}
        for key, raw in forward:
            if b"\n" in raw:  # a single record's event written over lines: as it came
                futures.append(self.producer.send(topic, key=key, value=raw, headers=[
                    *headers, ("content-type", CONTENT_TYPE.encode())]))
                continue
            by_partition.setdefault(partition_of(key, partitions), []).append(raw)
        for partition, lines in by_partition.items():
            futures += [self.producer.send(topic, value=b"\n".join(run), partition=partition, headers=[
                *headers, ("content-type", BULK_CONTENT_TYPE.encode())])
                for run in bulks(lines, self.BULK, BULK_BYTES)]
        self.producer.flush(timeout=300)
        for future in futures:
            future.get(timeout=0)  # raises the broker's refusal: nothing is committed then
        return len(forward)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()

"""Kafka to ClickHouse with an add()/flush() contract; offsets are committed only after a flush.

A crash between flush and commit redelivers the batch; the tables are
ReplacingMergeTree keyed so that a redelivered row replaces its identical twin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from hotspots import accepted
from hotspots.contract import MEASURES, ROWS_PER_ENVELOPE, dead_letter
from hotspots.heap import Heap
from hotspots.kafka_security import connect_failure, kafka_kwargs
from hotspots.metrics import BATCH_SIZE, SINK_FLUSH, SINK_LAG, SINK_ROWS, observe_lag
from hotspots.settings import SinkSettings
from sinks import landing
from sinks.alerts import ALERT_COLUMNS, alert_rows
from sinks.store import Store

log = logging.getLogger(__name__)

ROLLUP_COLUMNS = ("period", "res", "kind", "period_start", "cell", *MEASURES, "seq")
EVENT_COLUMNS = (*accepted.FIELDS[:-1], "payload")  # all but the source position
DEAD_LETTER_COLUMNS = ("reason", "source", "detail", "raw")


def _rollup(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    """An envelope of rollup states (one per worker fold and partition): a JSON array of
    ``[key name, seq, *measures]``, each a key's full state (streams.rollup.group_rows)."""
    out = []
    for name, seq, *measures in orjson.loads(value):
        period, res, cell, start, kind = name.split("|")
        out.append((period, int(res), kind, _date(start), int(cell), *measures, seq))
    return out


_DATES: dict[str, date] = {}  # period starts seen: a few thousand at most


def _date(text: str) -> date:
    day = _DATES.get(text)
    if day is None:
        day = _DATES[text] = date.fromisoformat(text)
    return day


_AT, _WEEK, _MONTH = (accepted.AT[f] for f in ("occurred_at", "week_start", "month_start"))


def _events(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    """An envelope of accepted events (hotspots.accepted; one or more per worker fold)."""
    out = []
    for values, payload in accepted.decode(value):
        values[_AT] = datetime.fromisoformat(values[_AT])
        values[_WEEK] = _date(values[_WEEK])
        values[_MONTH] = _date(values[_MONTH])
        values[-1] = payload  # in place of the source position
        out.append(tuple(values))
    return out


def _dead_letter(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    row = orjson.loads(value)
    return [tuple(row[c] for c in DEAD_LETTER_COLUMNS)]


class BatchingSink:
    """Buffers records per table; flush() writes them all or raises, keeping the batch.

    The worker's rollup and accepted envelopes are kept as they came and parsed by ClickHouse
    (sinks.landing); the other topics are decoded here into rows.
    """

    def __init__(self, store: Store, settings: SinkSettings) -> None:
        self.store = store
        self.routes = {
            settings.rollups_topic: ("rollups", ROLLUP_COLUMNS, _rollup),
            settings.accepted_topic: ("events", EVENT_COLUMNS, _events),
            settings.dlq_topic: ("dead_letters", DEAD_LETTER_COLUMNS, _dead_letter),
            settings.alerts_topic: ("alerts", ALERT_COLUMNS, alert_rows),  # streams.alerts
        }
        self.landings = {settings.rollups_topic: landing.ROLLUPS,
                         settings.accepted_topic: landing.EVENTS}
        self.batches: dict[str, list[tuple[Any, ...]]] = {t: [] for t, _, _ in self.routes.values()}
        # Envelopes for the landing tables, as they came, with the rows each holds.
        self.landed: dict[str, list[tuple[bytes, int]]] = {t: [] for t in self.landings}
        self.size = 0

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        land = self.landings.get(topic)
        if land is not None and land.fits(value):
            rows = land.rows(value)
            self.landed[topic].append((value, rows))
            self.size += rows
            return
        table, _, convert = self.routes[topic]
        decoded = convert(key, value)
        self.batches[table].extend(decoded)
        self.size += len(decoded)

    def flush(self) -> None:
        for topic, envelopes in self.landed.items():
            if envelopes:
                self._land(topic, envelopes)
                self.landed[topic] = []
                SINK_ROWS.labels(self.routes[topic][0]).inc(sum(n for _, n in envelopes))
        for table, columns, _ in self.routes.values():
            rows = self.batches[table]
            if rows:
                self.store.insert(table, rows, columns)
                self.batches[table] = []
                SINK_ROWS.labels(table).inc(len(rows))
        self.size = 0

    def _land(self, topic: str, envelopes: list[tuple[bytes, int]]) -> None:
        land = self.landings[topic]
        body = b"\n".join(land.text(value) for value, _ in envelopes)
        try:
            self.store.insert_raw(land.table, land.column, body, land.fmt)
            return
        except DatabaseError as exc:  # ClickHouse answered, and refused them
            if isinstance(exc, OperationalError):
                raise  # the store is unreachable: the batch is retried whole, not decoded
            log.warning("%s: ClickHouse refused the envelopes (%s); decoding them here",
                        land.table, str(exc).splitlines()[0][:300])
        # Part of the body may have landed before the error: the rows written again are
        # identical twins, which the tables' keys replace, as for a redelivered batch.
        table, columns, convert = self.routes[topic]
        rows: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, ...]] = []
        for value, _ in envelopes:
            try:
                rows.extend(convert(b"", value))
            except Exception as exc:  # whatever the bytes hold
                letter = dead_letter(value, "bad_envelope", f"{type(exc).__name__}: {exc}", topic)
                dead.append(tuple(letter[c] for c in DEAD_LETTER_COLUMNS))
        self.store.insert(table, rows, columns)  # raises while the store is down: retried
        if dead:
            log.error("%s: %d envelope(s) could not be decoded; stored as dead letters",
                      topic, len(dead))
            self.store.insert("dead_letters", dead, DEAD_LETTER_COLUMNS)


# Seconds without partitions before the sink replaces its consumer. The hang below happens
# in the second join, when the topics appear just after the sink joined (4 bench runs in
# about 60, 2026-11-29); the hung client also spins a core. 60 s cost a
# 20k-event smoke run a 10x slower rate; a healthy single-member join takes well under 1 s.
REJOIN_AFTER = 15.0
SESSION_TIMEOUT_MS = 10_000  # below REJOIN_AFTER: a dead predecessor is gone before that fires
# Rows one record may carry: a worker envelope (ROWS_PER_ENVELOPE rollup rows, or up to
# 256 KB of accepted events, as many). Polls are sized by it so that the buffer stays near
# batch_max rows however many rows a record carries.
ROWS_PER_RECORD = ROWS_PER_ENVELOPE


def poll_size(buffered: int, batch_max: int) -> int:
    """Records to take in the next poll: enough to fill the batch if each carried
    ROWS_PER_RECORD rows, and at least one."""
    return max(1, (batch_max - buffered) // ROWS_PER_RECORD)


class SinkLoop:
    """Polls the worker's output topics into the store. Runs in its own thread."""

    def __init__(self, store: Store, settings: SinkSettings) -> None:
        self.settings = settings
        self.sink = BatchingSink(store, settings)
        self.pending: dict[TopicPartition, int] = {}
        self.stop = threading.Event()
        self.healthy = threading.Event()
        self.flushed_batches = 0
        self.flushed_rows = 0
        self.newest_ms = 0  # Kafka timestamp (ms) of the newest record added since the last flush
        self.rejoins = 0
        self.heap = Heap()
        self.consumer = self._connect()

    def _connect(self) -> KafkaConsumer:
        try:
            consumer = KafkaConsumer(
                **kafka_kwargs(self.settings),  # bootstrap servers and HOTSPOTS_SECURITY_* settings
                group_id=self.settings.sink_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.settings.batch_max,
                # A sink killed -9 stays a member until its session expires, and its successor
                # gets no partition until then: 45 s with kafka-python's default. Heartbeats
                # come from a background thread, so a long flush does not end the session.
                session_timeout_ms=SESSION_TIMEOUT_MS,
            )
        except KafkaError as exc:
            raise RuntimeError(connect_failure(self.settings, exc)) from None
        consumer.subscribe(list(self.sink.routes), listener=_FlushOnRevoke(self))
        return consumer

    def _rejoin_if_stuck(self, unassigned_since: float | None) -> float | None:
        """kafka-python 3.0.12 was seen, under load, to hang for good in a group join with no
        partitions assigned (elected leader, no assignment ever applied). One sink owns all
        partitions, so a long spell without any means a stuck client: start a fresh one."""
        if self.consumer.assignment():
            return None
        now = time.monotonic()
        if unassigned_since is None:
            return now
        if now - unassigned_since < REJOIN_AFTER:
            return unassigned_since
        log.warning("no partitions assigned for %.0fs: rejoining the group with a new consumer",
                    now - unassigned_since)
        self.flush_and_commit()
        self.consumer.close(autocommit=False)
        self.consumer = self._connect()
        self.rejoins += 1
        return time.monotonic()

    def run(self) -> None:
        last_flush = time.monotonic()
        unassigned_since: float | None = None
        self.healthy.set()
        try:
            while not self.stop.is_set():
                # With rows waiting, a short poll: one that comes back empty means the input
                # has gone quiet (the worker's fold has been read whole), so flush now.
                quiet = self.settings.flush_quiet if self.pending else 0.0
                polled = self.consumer.poll(
                    timeout_ms=round(quiet * 1000) or 100,
                    max_records=poll_size(self.sink.size, self.settings.batch_max))
                unassigned_since = self._rejoin_if_stuck(unassigned_since)
                for tp, messages in polled.items():
                    for message in messages:
                        self.sink.add(tp.topic, message.key, message.value)
                    self.pending[tp] = messages[-1].offset + 1
                    self.newest_ms = max(self.newest_ms, messages[-1].timestamp or 0)
                due = (time.monotonic() - last_flush >= self.settings.flush_interval
                       or (quiet > 0 and not polled))
                if self.pending and (self.sink.size >= self.settings.batch_max or due):
                    self.flush_and_commit()
                    last_flush = time.monotonic()
            self.flush_and_commit()
        finally:
            self.healthy.clear()
            self.consumer.close(autocommit=False)

    def flush_and_commit(self) -> None:
        if not self.pending:
            return
        rows = self.sink.size
        started = time.monotonic()
        delay = 0.5
        while True:
            try:
                self.sink.flush()
                break
            except Exception as exc:  # the store is down: keep the batch, back off, retry
                if self.stop.is_set():
                    raise
                log.warning("store insert failed (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        SINK_FLUSH.observe(time.monotonic() - started)
        BATCH_SIZE.labels("sink").observe(rows)
        if self.newest_ms:
            now = time.time()
            SINK_LAG.set(max(now - self.newest_ms / 1000, 0.0))
            observe_lag("sink", self.newest_ms / 1000, now)
            self.newest_ms = 0
        self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in self.pending.items()})
        self.pending.clear()
        self.flushed_batches += 1
        self.flushed_rows += rows
        self.heap.settle()


class SupervisedLoop:
    """The sink loop, started again with a new consumer whenever it fails (a broker outage, a
    commit refused after a long store outage moved the group on). The HTTP API in the same
    process keeps serving the store meanwhile, and no outside supervisor is needed. What the
    failed loop had not committed is read again; the tables absorb rows stored twice.

    The first loop is made in the caller's thread, so a wrong address still fails at start.
    """

    def __init__(self, make: Callable[[], SinkLoop], first_delay: float = 1.0,
                 max_delay: float = 30.0) -> None:
        self.make, self.first_delay, self.max_delay = make, first_delay, max_delay
        self.loop = make()
        self.stopping = threading.Event()
        self.restarts = 0
        self._before = (0, 0)  # batches and rows the loops before this one flushed

    @property
    def healthy(self) -> threading.Event:
        return self.loop.healthy

    @property
    def flushed_batches(self) -> int:  # over every loop: the map's live updates follow it
        return self._before[0] + self.loop.flushed_batches

    @property
    def flushed_rows(self) -> int:
        return self._before[1] + self.loop.flushed_rows

    def run(self) -> None:
        delay = self.first_delay
        while True:
            started = time.monotonic()
            try:
                self.loop.run()
                return  # stopped
            except Exception:
                if self.stopping.is_set():
                    raise
                if time.monotonic() - started > 60:  # it had worked a while: a new outage
                    delay = self.first_delay
                log.exception("the sink loop failed; starting a new one in %.1fs", delay)
            while True:
                if self.stopping.wait(delay):
                    return
                delay = min(delay * 2, self.max_delay)
                try:
                    loop = self.make()
                except Exception as exc:  # e.g. Kafka still unreachable
                    log.warning("cannot start the sink loop yet (%s); next try in %.1fs", exc, delay)
                    continue
                self._before = (self.flushed_batches, self.flushed_rows)
                self.loop = loop
                break
            self.restarts += 1
            if self.stopping.is_set():  # stop() may have told the old loop only
                self.loop.stop.set()

    def stop(self) -> None:
        self.stopping.set()
        self.loop.stop.set()


class _FlushOnRevoke(ConsumerRebalanceListener):
    def __init__(self, loop: SinkLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.loop.flush_and_commit()

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass

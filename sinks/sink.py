"""Kafka to ClickHouse with an add()/flush() contract; offsets are committed only after a flush.

A crash between flush and commit redelivers the batch; the tables are
ReplacingMergeTree keyed so that a redelivered row replaces its identical twin.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date, datetime
from typing import Any

import orjson
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from hotspots.contract import MEASURES
from hotspots.metrics import BATCH_SIZE, SINK_FLUSH, SINK_LAG, SINK_ROWS, observe_lag
from hotspots.settings import SinkSettings
from sinks.store import Store
from streams.rollup import RollupKey, rollup_row

log = logging.getLogger(__name__)

ROLLUP_COLUMNS = ("period", "res", "kind", "period_start", "cell", *MEASURES, "seq")
EVENT_COLUMNS = ("event_id", "kind", "occurred_at", "time_precision", "week_start", "month_start",
                 "lat", "lon", "force", "operation", "cell8", "cell7", "cell6", *MEASURES, "payload")
DEAD_LETTER_COLUMNS = ("reason", "source", "detail", "raw")


def _rollup(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    """A record of the worker's rollups changelog: key "period|res|cell|start|kind", full state."""
    rkey = RollupKey.decode(orjson.loads(key))
    row = rollup_row(rkey, orjson.loads(value))
    row["period_start"] = rkey.start
    return [tuple(row[c] for c in ROLLUP_COLUMNS)]


def _events(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    """An envelope of accepted events (one per worker batch)."""
    out = []
    for row in orjson.loads(value):
        row["occurred_at"] = datetime.fromisoformat(row["occurred_at"])
        row["week_start"] = date.fromisoformat(row["week_start"])
        row["month_start"] = date.fromisoformat(row["month_start"])
        out.append(tuple(row[c] for c in EVENT_COLUMNS))
    return out


def _dead_letter(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    row = orjson.loads(value)
    return [tuple(row[c] for c in DEAD_LETTER_COLUMNS)]


class BatchingSink:
    """Buffers decoded records per table; flush() writes them all or raises, keeping the batch."""

    def __init__(self, store: Store, settings: SinkSettings) -> None:
        self.store = store
        self.routes = {
            settings.rollups_topic: ("rollups", ROLLUP_COLUMNS, _rollup),
            settings.accepted_topic: ("events", EVENT_COLUMNS, _events),
            settings.dlq_topic: ("dead_letters", DEAD_LETTER_COLUMNS, _dead_letter),
        }
        self.batches: dict[str, list[tuple[Any, ...]]] = {t: [] for t, _, _ in self.routes.values()}
        self.size = 0

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        table, _, convert = self.routes[topic]
        rows = convert(key, value)
        self.batches[table].extend(rows)
        self.size += len(rows)

    def flush(self) -> None:
        for table, columns, _ in self.routes.values():
            rows = self.batches[table]
            if rows:
                self.store.insert(table, rows, columns)
                self.batches[table] = []
                SINK_ROWS.labels(table).inc(len(rows))
        self.size = 0


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
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            group_id=settings.sink_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max,
        )
        self.consumer.subscribe(list(self.sink.routes), listener=_FlushOnRevoke(self))

    def run(self) -> None:
        last_flush = time.monotonic()
        self.healthy.set()
        try:
            while not self.stop.is_set():
                polled = self.consumer.poll(timeout_ms=100, max_records=self.settings.batch_max)
                for tp, messages in polled.items():
                    for message in messages:
                        self.sink.add(tp.topic, message.key, message.value)
                    self.pending[tp] = messages[-1].offset + 1
                    self.newest_ms = max(self.newest_ms, messages[-1].timestamp or 0)
                due = time.monotonic() - last_flush >= self.settings.flush_interval
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


class _FlushOnRevoke(ConsumerRebalanceListener):
    def __init__(self, loop: SinkLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.loop.flush_and_commit()

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass

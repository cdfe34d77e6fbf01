"""Publish contract events with kafka-python: keyed by resolution-6 cell, acks=all, idempotent."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from hotspots.contract import (
    BULK_CONTENT_TYPE,
    CONTENT_TYPE,
    CONTRACT_VERSION,
    Event,
    dead_letter,
    encode_event,
)
from hotspots.geo import partition_key, partition_of
from hotspots.kafka_security import connect_failure, kafka_kwargs
from hotspots.metrics import EVENTS_OUT, INVALID
from hotspots.settings import ProducerSettings


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True)
class Rejected:
    """A record refused where it entered: it goes to the dead-letter topic with its reason."""

    raw: bytes
    reason: str
    detail: str
    source: str


# A bulk record stays far below Kafka's 1 MB default message limit.
BULK_BYTES = 256 * 1024


def kafka_producer(settings: ProducerSettings) -> KafkaProducer:
    """A producer with the product's settings: acknowledged by every replica, idempotent."""
    try:
        return KafkaProducer(
            **kafka_kwargs(settings),  # bootstrap servers and HOTSPOTS_SECURITY_* settings
            acks="all",
            enable_idempotence=True,  # a retried send is not written twice
            compression_type=settings.compression,
            linger_ms=settings.linger_ms,
            retries=10,
            request_timeout_ms=15000,
            max_block_ms=15000,
            bootstrap_timeout_ms=15000,
        )
    except KafkaError as exc:
        raise PublishError(connect_failure(settings, exc)) from None


def wait_for_acks(sender: Any, timeout: float, what: str) -> None:
    """Flush ``sender.producer`` and raise if any send failed (``sender.failed``), saying how
    many of ``what`` the broker acknowledged (``sender.acked``)."""
    try:
        sender.producer.flush(timeout=timeout)
    except KafkaError as exc:
        raise PublishError(f"flush failed: {exc}; {what} acknowledged so far: {sender.acked}") from None
    if sender.failed:
        raise PublishError(f"{len(sender.failed)} sends not acknowledged (first: {sender.failed[0]}); "
                           f"{what} acknowledged: {sender.acked}")


class EventPublisher:
    """Sends events and counts what the broker acknowledged; only acknowledged counts as sent.

    ``bulk`` > 1 packs up to that many events bound for one partition into one record
    (newline-delimited JSON, content-type BULK_CONTENT_TYPE): Kafka and the worker then pay
    their per-record cost once per bulk, which is most of the worker's cost per event when
    events come one by one. A bulk is sent when full, when its first event has waited
    ``settings.bulk_linger_ms`` (a background thread sees to it, so a live event is never
    held longer), and on flush(). bulk=0 sends each event as its own record.
    """

    def __init__(self, settings: ProducerSettings, source: str, bulk: int = 0,
                 topic: str | None = None, bulk_bytes: int = BULK_BYTES) -> None:
        self.topic = topic or settings.events_topic  # the history topic for `hotspots backfill`
        self.bulk_bytes = bulk_bytes
        self.dlq_topic = settings.dlq_topic
        self.dead_lettered = 0
        self.source = source.encode()
        self.acked = 0
        self.failed: list[str] = []
        self._sent_by_kind: dict[str, Any] = {}  # kind -> its events_out child, looked up once
        self.bulk = bulk
        self._bulks: dict[int, list[bytes]] = {}  # partition -> encoded events waiting
        self._bulk_bytes: dict[int, int] = {}
        self._bulk_since: dict[int, float] = {}  # partition -> when its first event was added
        self._bulk_lock = threading.Lock()  # the sender's thread and the linger thread
        self._linger = settings.bulk_linger_ms / 1000
        self._closed = threading.Event()
        self._partitions = 0
        self.producer = kafka_producer(settings)
        if bulk > 1 and self._linger > 0:
            threading.Thread(target=self._send_lingering, name="bulk-linger", daemon=True).start()

    def _send_lingering(self) -> None:
        """Send every bulk whose first event has waited the linger time."""
        while not self._closed.wait(self._linger / 2):
            now = time.monotonic()
            with self._bulk_lock:
                for partition, since in list(self._bulk_since.items()):
                    if now - since >= self._linger:
                        self._send_bulk(partition)

    def _ok(self, _meta: Any, events: int = 1) -> None:
        self.acked += events

    def _err(self, event_id: str) -> Any:
        return lambda exc: self.failed.append(f"{event_id}: {exc}")

    def send(self, event: Event) -> None:
        if self.bulk > 1:
            self._add_to_bulk(event)
        else:
            self._send_one(event)
        counter = self._sent_by_kind.get(event.kind)
        if counter is None:
            counter = self._sent_by_kind[event.kind] = EVENTS_OUT.labels("producer", event.kind)
        counter.inc()

    def _send_one(self, event: Event) -> None:
        headers = [
            ("contract", f"v{CONTRACT_VERSION}".encode()),
            ("kind", event.kind.encode()),
            ("content-type", CONTENT_TYPE.encode()),
            ("source", self.source),
        ]
        future = self.producer.send(self.topic, key=partition_key(event.lat, event.lon),
                                    value=encode_event(event), headers=headers)
        future.add_callback(self._ok).add_errback(self._err(event.event_id))

    def _add_to_bulk(self, event: Event) -> None:
        if not self._partitions:
            found = self.producer.partitions_for(self.topic)  # blocks until metadata arrives
            if not found:
                raise PublishError(f"topic {self.topic} has no partitions")
            self._partitions = len(found)
        partition = partition_of(partition_key(event.lat, event.lon), self._partitions)
        line = encode_event(event)
        with self._bulk_lock:
            waiting = self._bulks.get(partition)
            if waiting and self._bulk_bytes[partition] + len(line) + 1 > self.bulk_bytes:
                self._send_bulk(partition)
                waiting = None
            if waiting is None:
                waiting = self._bulks[partition] = []
                self._bulk_since[partition] = time.monotonic()
            waiting.append(line)
            self._bulk_bytes[partition] = self._bulk_bytes.get(partition, 0) + len(line) + 1
            if len(waiting) >= self.bulk:
                self._send_bulk(partition)

    def _send_bulk(self, partition: int) -> None:
        """Send a partition's waiting bulk; the caller holds ``_bulk_lock``."""
        lines = self._bulks.pop(partition, [])
        self._bulk_bytes.pop(partition, None)
        self._bulk_since.pop(partition, None)
        if not lines:
            return
        headers = [("contract", f"v{CONTRACT_VERSION}".encode()),
                   ("content-type", BULK_CONTENT_TYPE.encode()), ("source", self.source)]
        future = self.producer.send(self.topic, value=b"\n".join(lines), partition=partition,
                                    headers=headers)
        n = len(lines)
        future.add_callback(self._ok, events=n).add_errback(
            self._err(f"bulk of {n} events for partition {partition}"))

    def send_rejected(self, rejected: Rejected) -> None:
        record = dead_letter(rejected.raw, rejected.reason, rejected.detail, rejected.source)
        future = self.producer.send(self.dlq_topic, key=rejected.reason.encode(),
                                    value=orjson.dumps(record), headers=[("source", self.source)])
        future.add_errback(self._err(f"dead letter {rejected.source}"))
        self.dead_lettered += 1
        INVALID.labels("producer", rejected.reason).inc()

    def send_all(self, events: Iterable[Event]) -> int:
        for event in events:
            self.send(event)
        self.flush()
        return self.acked

    def flush(self, timeout: float = 60.0) -> None:
        with self._bulk_lock:
            for partition in list(self._bulks):
                self._send_bulk(partition)
        wait_for_acks(self, timeout, "events")

    def close(self) -> None:
        self._closed.set()
        with self._bulk_lock:  # whatever still waits leaves before the producer closes
            for partition in list(self._bulks):
                self._send_bulk(partition)
        self.producer.close(timeout=10)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pacer:
    """Holds a send loop to a rate (events per second) and draws a progress line on a terminal."""

    def __init__(self, rate: float | None, total: int | None = None,
                 stream: TextIO = sys.stderr) -> None:
        self.rate, self.total, self.stream = rate, total, stream
        self.done = 0
        self.started = time.monotonic()
        self.drawn = 0.0
        self.show = stream.isatty()

    def tick(self) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        if self.rate:
            ahead = self.done / self.rate - elapsed
            if ahead > 0:
                time.sleep(ahead)
        if self.show and elapsed - self.drawn >= 0.2:
            self.drawn = elapsed
            of = f"/{self.total}" if self.total else ""
            self.stream.write(f"\r{self.done}{of} records, {self.done / max(elapsed, 1e-9):,.0f}/s ")
            self.stream.flush()

    def close(self) -> None:
        if self.show:
            self.stream.write("\n")

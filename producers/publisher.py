"""Publish contract events with kafka-python: keyed by resolution-6 cell, acks=all, idempotent."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from hotspots.contract import CONTENT_TYPE, CONTRACT_VERSION, Event, dead_letter, encode_event
from hotspots.geo import partition_key
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


class EventPublisher:
    """Sends events and counts what the broker acknowledged; only acknowledged counts as sent."""

    def __init__(self, settings: ProducerSettings, source: str) -> None:
        self.topic = settings.events_topic
        self.dlq_topic = settings.dlq_topic
        self.dead_lettered = 0
        self.source = source.encode()
        self.acked = 0
        self.failed: list[str] = []
        self._sent_by_kind: dict[str, Any] = {}  # kind -> its events_out child, looked up once
        try:
            self.producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap,
                acks="all",
                enable_idempotence=True,  # a retried send is not written twice
                compression_type=settings.compression,
                linger_ms=settings.linger_ms,
                retries=10,
                request_timeout_ms=15000,
                max_block_ms=15000,
            )
        except KafkaError as exc:
            raise PublishError(f"Kafka unreachable at {settings.bootstrap}: {exc}") from None

    def _ok(self, _meta: Any) -> None:
        self.acked += 1

    def _err(self, event_id: str) -> Any:
        return lambda exc: self.failed.append(f"{event_id}: {exc}")

    def send(self, event: Event) -> None:
        headers = [
            ("contract", f"v{CONTRACT_VERSION}".encode()),
            ("kind", event.kind.encode()),
            ("content-type", CONTENT_TYPE.encode()),
            ("source", self.source),
        ]
        future = self.producer.send(self.topic, key=partition_key(event.lat, event.lon),
                                    value=encode_event(event), headers=headers)
        future.add_callback(self._ok).add_errback(self._err(event.event_id))
        counter = self._sent_by_kind.get(event.kind)
        if counter is None:
            counter = self._sent_by_kind[event.kind] = EVENTS_OUT.labels("producer", event.kind)
        counter.inc()

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
        try:
            self.producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise PublishError(f"flush failed: {exc}; acknowledged so far: {self.acked}") from None
        if self.failed:
            raise PublishError(f"{len(self.failed)} events not acknowledged (first: "
                               f"{self.failed[0]}); acknowledged: {self.acked}")

    def close(self) -> None:
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

"""Publish contract events with kafka-python: keyed by resolution-6 cell, acks=all, idempotent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from hotspots.contract import CONTENT_TYPE, CONTRACT_VERSION, Event, encode_event
from hotspots.geo import partition_key
from hotspots.settings import ProducerSettings


class PublishError(RuntimeError):
    pass


class EventPublisher:
    """Sends events and counts what the broker acknowledged; only acknowledged counts as sent."""

    def __init__(self, settings: ProducerSettings, source: str) -> None:
        self.topic = settings.events_topic
        self.source = source.encode()
        self.acked = 0
        self.failed: list[str] = []
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

"""The product's producer packs live events into bulk records without holding any of them back:
a partial bulk leaves after HOTSPOTS_BULK_LINGER_MS, with no flush()."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer

from hotspots.contract import BULK_CONTENT_TYPE, Arrest
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import ProducerSettings
from hotspots.topics import ensure_topics
from producers.publisher import EventPublisher

pytestmark = pytest.mark.integration


def arrests(tag: str, n: int) -> list[Arrest]:
    return [Arrest(event_id=f"{tag}-{i}", occurred_at=datetime(2016, 5, 4, 10, tzinfo=UTC),
                   lat=51.7356, lon=0.4685, force="essex") for i in range(n)]


def records(consumer: KafkaConsumer, seconds: float) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=100).values():
            out += batch
    return out


@pytest.fixture
def topic_settings(live_stack) -> ProducerSettings:
    """A topic set of its own (uuid prefix) on the session's broker: no worker reads it."""
    settings = ProducerSettings(bootstrap=live_stack.bootstrap,
                                topic_prefix=f"bulk-{uuid.uuid4().hex[:8]}", bulk_linger_ms=50)
    ensure_topics(settings)
    return settings


def consumer_of(settings: ProducerSettings) -> KafkaConsumer:
    return KafkaConsumer(settings.events_topic, **kafka_kwargs(settings),
                         auto_offset_reset="earliest", enable_auto_commit=False)


def test_a_partial_bulk_leaves_after_the_linger_without_a_flush(topic_settings) -> None:
    consumer = consumer_of(topic_settings)
    publisher = EventPublisher(topic_settings, source="test", bulk=100)
    try:
        for event in arrests("linger", 3):  # one cell, so one partition: one bulk of three
            publisher.send(event)
        got = records(consumer, 5.0)
        assert len(got) == 1, got
        assert dict(got[0].headers)["content-type"] == BULK_CONTENT_TYPE.encode()
        assert got[0].value.count(b"\n") == 2
        assert publisher.acked == 3
    finally:
        publisher.close()
        consumer.close()


def test_without_a_linger_a_partial_bulk_waits_for_flush(topic_settings) -> None:
    settings = topic_settings.model_copy(update={"bulk_linger_ms": 0})
    consumer = consumer_of(settings)
    publisher = EventPublisher(settings, source="test", bulk=100)
    try:
        for event in arrests("flush", 3):
            publisher.send(event)
        assert records(consumer, 2.0) == []  # the linger thread above is what sent them
        publisher.flush()
        got = records(consumer, 5.0)
        assert len(got) == 1 and got[0].value.count(b"\n") == 2 and publisher.acked == 3
    finally:
        publisher.close()
        consumer.close()

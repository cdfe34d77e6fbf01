"""Prometheus metrics of each stage (hotspots.metrics), read back from the default registry.

The registry is process-wide: each test compares values before and after what it drives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from faust.topics import Topic
from kafka import TopicPartition
from prometheus_client import REGISTRY

from hotspots import metrics
from hotspots.contract import dead_letter
from hotspots.settings import ProducerSettings, SinkSettings
from producers import publisher
from producers.publisher import EventPublisher, Rejected
from sinks import sink as sink_module
from sinks.api import build_api
from sinks.sink import BatchingSink, SinkLoop
from tests.unit.test_agent import ARREST, ARREST_2, SEIZURE, put, run


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def delta(name: str, **labels: str) -> Callable[[], float]:
    """How much ``name{labels}`` has grown since this call."""
    before = value(name, **labels)
    return lambda: value(name, **labels) - before


class _Delivered(asyncio.Future):
    message: Any


@pytest.fixture
def quiet_topics(monkeypatch) -> None:
    """The worker's sends go nowhere (as in test_agent, without recording them)."""

    async def send(self: Any, **kw: Any) -> None:
        return None

    def send_soon(self: Any, **kw: Any) -> Any:
        fut = _Delivered(loop=asyncio.get_running_loop())  # the agent awaits its writes
        fut.message = SimpleNamespace(partition=kw.get("partition"))
        fut.set_result(None)
        return fut

    monkeypatch.setattr(Topic, "send", send)
    monkeypatch.setattr(Topic, "send_soon", send_soon)


def test_worker_counts_in_out_and_refused_per_batch(tmp_path, quiet_topics):
    arrests_in = delta("hotspots_events_in_total", stage="worker", kind="arrest")
    seizures_in = delta("hotspots_events_in_total", stage="worker", kind="seizure")
    unknown_in = delta("hotspots_events_in_total", stage="worker", kind=metrics.UNKNOWN_KIND)
    arrests_out = delta("hotspots_events_out_total", stage="worker", kind="arrest")
    seizures_out = delta("hotspots_events_out_total", stage="worker", kind="seizure")
    personal = delta("hotspots_invalid_total", stage="worker", reason="personal_data")
    conflicts = delta("hotspots_invalid_total", stage="worker", reason="duplicate_conflict")
    batches = delta("hotspots_batch_size_count", stage="worker")
    batched = delta("hotspots_batch_size_sum", stage="worker")

    async def scenario(agent):
        await put(agent, ARREST)
        await put(agent, ARREST_2)
        await agent.put(b'{"kind": "arrest", "date_of_birth": "1990-01-01"}', key=b"k")
        await put(agent, ARREST.model_copy(update={"charged": False}))  # same id, other content
        await put(agent, SEIZURE)

    run(tmp_path, 1, scenario)  # then a sentinel record, refused as not an event
    assert (arrests_in(), seizures_in(), unknown_in()) == (3, 1, 2)
    assert (arrests_out(), seizures_out()) == (2, 1)
    assert (personal(), conflicts()) == (1, 1)
    assert batches() >= 1 and batched() == 6
    lag = value("hotspots_processing_lag_seconds", stage="worker")
    assert 0 <= lag < 30  # test_context stamps each message with the time it was put


class _Future:
    def add_callback(self, fn: Any) -> _Future:
        return self

    def add_errback(self, fn: Any) -> _Future:
        return self


class _Producer:
    def __init__(self, **config: Any) -> None:
        self.sent: list[str] = []

    def send(self, topic: str, **kw: Any) -> _Future:
        self.sent.append(topic)
        return _Future()


def test_producer_counts_sent_by_kind_and_rejected_by_reason(monkeypatch):
    monkeypatch.setattr(publisher, "KafkaProducer", _Producer)
    arrests = delta("hotspots_events_out_total", stage="producer", kind="arrest")
    seizures = delta("hotspots_events_out_total", stage="producer", kind="seizure")
    refused = delta("hotspots_invalid_total", stage="producer", reason="malformed")
    pub = EventPublisher(ProducerSettings(), "unit")
    for event in (ARREST, ARREST_2, SEIZURE):
        pub.send(event)
    pub.send_rejected(Rejected(b"{", "malformed", "not JSON", "unit:1"))
    assert (arrests(), seizures(), refused()) == (2, 1, 1)


class _Store:
    def __init__(self) -> None:
        self.inserted: dict[str, int] = {}

    def insert(self, table: str, rows: list[Any], columns: Any) -> None:
        self.inserted[table] = self.inserted.get(table, 0) + len(rows)


class _Consumer:
    def __init__(self, **config: Any) -> None:
        self.committed: list[Any] = []

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def commit(self, offsets: Any) -> None:
        self.committed.append(offsets)


def test_sink_counts_rows_per_table_flush_time_and_lag(monkeypatch):
    monkeypatch.setattr(sink_module, "KafkaConsumer", _Consumer)
    settings = SinkSettings()
    loop = SinkLoop(_Store(), settings)  # type: ignore[arg-type]
    dead = delta("hotspots_sink_rows_total", table="dead_letters")
    flushes = delta("hotspots_sink_flush_seconds_count")
    record = orjson.dumps(dead_letter(b"{", "malformed", "not JSON", "unit"))
    loop.sink.add(settings.dlq_topic, b"malformed", record)
    loop.sink.add(settings.dlq_topic, b"malformed", record)
    loop.pending[TopicPartition(settings.dlq_topic, 0)] = 2
    loop.newest_ms = int((time.time() - 3) * 1000)
    loop.flush_and_commit()
    assert dead() == 2 and flushes() == 1
    assert 2.5 < value("hotspots_sink_lag_seconds") < 30
    assert 2.5 < value("hotspots_processing_lag_seconds", stage="sink") < 30
    assert loop.consumer.committed and loop.newest_ms == 0


def test_batching_sink_counts_only_what_the_store_took():
    settings = SinkSettings()
    store = _Store()
    batching = BatchingSink(store, settings)  # type: ignore[arg-type]
    dead = delta("hotspots_sink_rows_total", table="dead_letters")
    batching.add(settings.dlq_topic, b"r", orjson.dumps(dead_letter(b"x", "r", "d", "s")))
    batching.flush()
    batching.flush()  # nothing left: nothing counted
    assert dead() == 1 and store.inserted == {"dead_letters": 1}


def test_sink_api_serves_metrics():
    metrics.mark_up("sink")
    client = TestClient(build_api(None, lambda: {"ok": True}))  # type: ignore[arg-type]
    response = client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("hotspots_sink_flush_seconds", "hotspots_sink_lag_seconds", 'hotspots_up{stage="sink"} 1.0'):
        assert name in text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_exporter_off_on_port_zero_and_survives_a_taken_port():
    import socket

    assert metrics.start_exporter("unit", 0) is False
    assert value("hotspots_up", stage="unit") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert metrics.start_exporter("unit", taken.getsockname()[1]) is False

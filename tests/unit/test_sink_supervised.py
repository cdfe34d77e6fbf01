"""sinks.sink.SupervisedLoop: a failed sink loop is replaced in-process, so the API stays up.

The Kafka client is a stand-in here, to fail on cue; the real client failing in a broker
outage is the fault suite's business (tests/faults/test_chaos.py kills the broker).
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import orjson
import pytest
from kafka.errors import KafkaError

from hotspots.contract import dead_letter
from hotspots.settings import SinkSettings
from sinks import sink as sink_module
from sinks.sink import SinkLoop, SupervisedLoop

SETTINGS = SinkSettings(flush_interval=0.01)
RECORD = orjson.dumps(dead_letter(b"{", "malformed", "not JSON", "unit"))


class _Store:
    def __init__(self) -> None:
        self.rows = 0

    def insert(self, table: str, rows: list[Any], columns: Any) -> None:
        self.rows += len(rows)


class _Message:
    def __init__(self, offset: int) -> None:
        self.key, self.value, self.offset, self.timestamp = b"malformed", RECORD, offset, 0


class _Consumer:
    """Delivers ``records`` dead letters once, then (once they can have been flushed) raises
    ``fail`` on every poll, if any."""

    made: ClassVar[list[_Consumer]] = []
    plan: ClassVar[list[tuple[int, Exception | None]]] = []

    def __init__(self, **_config: Any) -> None:
        self.records, self.fail = self.plan.pop(0) if self.plan else (0, None)
        self.closed = False
        self.quiet_until = 0.0
        self.committed: list[Any] = []
        self.made.append(self)

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def assignment(self) -> set[Any]:
        return {sink_module.TopicPartition(SETTINGS.dlq_topic, 0)}

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, list[_Message]]:
        if self.records:
            batch = [_Message(i) for i in range(self.records)]
            self.records = 0
            self.quiet_until = time.monotonic() + 0.1
            return {sink_module.TopicPartition(SETTINGS.dlq_topic, 0): batch}
        if self.fail is not None and time.monotonic() > self.quiet_until:
            raise self.fail
        time.sleep(0.005)
        return {}

    def commit(self, offsets: Any) -> None:
        self.committed.append(offsets)

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


@pytest.fixture
def consumers(monkeypatch) -> type[_Consumer]:
    monkeypatch.setattr(sink_module, "KafkaConsumer", _Consumer)
    _Consumer.made, _Consumer.plan = [], []
    return _Consumer


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def started(loop: SupervisedLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


def test_a_failed_loop_is_replaced_and_its_counts_carry_on(consumers):
    consumers.plan = [(2, KafkaError("broker gone")), (3, None)]
    store = _Store()
    loop = SupervisedLoop(lambda: SinkLoop(store, SETTINGS), first_delay=0.01)  # type: ignore[arg-type]
    thread = started(loop)
    wait_for(lambda: loop.restarts == 1 and loop.flushed_rows == 5)
    assert loop.healthy.is_set() and loop.flushed_batches == 2
    first, second = consumers.made
    assert first.closed and first.committed and second.committed
    loop.stop()
    thread.join(5)
    assert not thread.is_alive() and second.closed and store.rows == 5


def test_kafka_unreachable_at_a_restart_is_tried_again(consumers):
    consumers.plan = [(0, KafkaError("broker gone"))]
    made = {"n": 0}

    def make() -> SinkLoop:
        made["n"] += 1
        if made["n"] in (2, 3):  # the second and third attempts: no broker yet
            raise RuntimeError("Kafka unreachable")
        return SinkLoop(_Store(), SETTINGS)  # type: ignore[arg-type]

    loop = SupervisedLoop(make, first_delay=0.01)
    thread = started(loop)
    wait_for(lambda: loop.restarts == 1 and loop.healthy.is_set())
    assert made["n"] == 4
    loop.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_stop_cuts_the_wait_for_a_restart_short(consumers):
    consumers.plan = [(0, KafkaError("broker gone"))]
    loop = SupervisedLoop(lambda: SinkLoop(_Store(), SETTINGS), first_delay=60)  # type: ignore[arg-type]
    thread = started(loop)
    wait_for(lambda: not loop.healthy.is_set() and consumers.made[0].closed)
    began = time.monotonic()
    loop.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - began < 5 and loop.restarts == 0


def test_a_failure_at_start_is_not_retried(consumers):
    def make() -> SinkLoop:
        raise RuntimeError("Kafka unreachable at 127.0.0.1:1")

    with pytest.raises(RuntimeError, match="unreachable"):
        SupervisedLoop(make)

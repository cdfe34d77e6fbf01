"""When the sink loop writes a partial batch: full, the interval old, or the input gone quiet.

The Kafka client is a stand-in that plays a script of polls (its timing is the point here);
the freshness this buys through the real stack is measured by bench/pipeline.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hotspots.settings import SinkSettings
from sinks import sink as sink_module
from sinks.sink import SinkLoop
from tests.unit.test_sink_supervised import (
    SETTINGS,
    _Consumer,
    _Message,
    _Store,
    started,
    wait_for,
)


class _Script(_Consumer):
    """Polls return ``burst`` records at once, then ``trickle`` polls of one record each
    (a steady input: never an empty poll), then nothing, waiting out each poll's timeout."""

    burst = 0
    trickle = 0

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.offset = 0
        self.timeouts: list[int] = []
        self.tp = sink_module.TopicPartition(SETTINGS.dlq_topic, 0)

    def _take(self, n: int) -> dict[Any, list[_Message]]:
        batch = [_Message(self.offset + i) for i in range(n)]
        self.offset += n
        return {self.tp: batch}

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, list[_Message]]:
        self.timeouts.append(timeout_ms)
        if self.burst:
            n, _Script.burst = self.burst, 0
            return self._take(n)
        if self.trickle:
            _Script.trickle -= 1
            time.sleep(0.005)
            return self._take(1)
        time.sleep(timeout_ms / 1000)
        return {}


@pytest.fixture
def script(monkeypatch) -> type[_Script]:
    monkeypatch.setattr(sink_module, "KafkaConsumer", _Script)
    _Script.made, _Script.plan = [], []
    _Script.burst = _Script.trickle = 0
    return _Script


def running(settings: SinkSettings) -> tuple[SinkLoop, _Store, Any]:
    store = _Store()
    loop = SinkLoop(store, settings)  # type: ignore[arg-type]
    return loop, store, started(loop)  # type: ignore[arg-type]


def stopped(loop: SinkLoop, thread: Any) -> None:
    loop.stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_a_burst_is_written_once_the_input_goes_quiet(script):
    script.burst = 3
    loop, store, thread = running(SinkSettings(flush_interval=60, flush_quiet=0.02))
    began = time.monotonic()
    wait_for(lambda: store.rows == 3, timeout=5)
    assert time.monotonic() - began < 1.0  # not the interval's 60 s
    assert loop.flushed_batches == 1 and loop.consumer.committed
    # With rows waiting it polled for the quiet time, not the idle 100 ms.
    assert 20 in loop.consumer.timeouts  # type: ignore[attr-defined]
    stopped(loop, thread)


def test_without_a_quiet_time_a_burst_waits_for_the_interval(script):
    script.burst = 3
    loop, store, thread = running(SinkSettings(flush_interval=0.6, flush_quiet=0))
    time.sleep(0.3)
    assert store.rows == 0
    wait_for(lambda: store.rows == 3, timeout=5)
    assert set(loop.consumer.timeouts) == {100}  # type: ignore[attr-defined]
    stopped(loop, thread)


def test_a_steady_input_builds_one_batch_not_one_per_poll(script):
    # Records keep coming, each poll brings some: the quiet time never passes, so the batch
    # grows until the input stops (or the interval or the size cap says otherwise).
    script.trickle = 40
    loop, store, thread = running(SinkSettings(flush_interval=60, flush_quiet=0.05))
    wait_for(lambda: loop.consumer.offset >= 20, timeout=5)  # type: ignore[attr-defined]
    assert store.rows == 0
    wait_for(lambda: store.rows == 40, timeout=5)
    assert loop.flushed_batches == 1
    stopped(loop, thread)

"""`hotspots wait`'s judgement (hotspots/caughtup.py) without a broker: the progress records,
the arithmetic of what is unfolded, and the order and rounds of the waits."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest

from hotspots import caughtup
from hotspots.caughtup import progress_changelog, progress_entry, unfolded_by, wait_folded, wait_pipeline
from hotspots.settings import SinkSettings, WorkerSettings

WORKER = WorkerSettings(topic_prefix="unit-wait", app_id="unit-worker")
SINK = SinkSettings(topic_prefix="unit-wait", sink_group="unit-sink")


def test_the_changelog_is_faust_s_name_for_the_progress_table() -> None:
    assert progress_changelog(WORKER) == "unit-worker-progress-changelog"
    assert progress_changelog(WORKER, "spikes") == "unit-worker-spikes_progress-changelog"
    assert caughtup.source_topic(WORKER, "district_spikes") == WORKER.district_events_topic


def test_each_stream_process_s_group_and_source() -> None:
    """What `hotspots up` waits for and the chaos test watches, per process."""
    assert WORKER.group_source("worker") == ("unit-worker", WORKER.events_topic)
    assert WORKER.group_source("spikes") == ("unit-worker-spikes", WORKER.accepted_topic)
    with pytest.raises(ValueError, match="sink"):
        WORKER.group_source("sink")


@pytest.mark.parametrize(("key", "value", "entry"), [
    (b"3", b"1200", (3, 1200)),      # as the worker writes it: raw key, JSON value
    (b'"3"', b"1200", (3, 1200)),    # a JSON key
    (None, b"7", (2, 7)),            # no key: the changelog partition's own
    (b"?", b"7", (2, 7)),
    (b"3", b"0", (3, 0)),
    (b"3", None, None),              # a tombstone holds no offset
    (b"3", b"true", None),
    (b"3", b"-1", None),
    (b"3", b'"12"', None),
    (b"3", b"{", None),
])
def test_progress_entry(key: bytes | None, value: bytes | None, entry: tuple[int, int] | None) -> None:
    assert progress_entry(key, value, 2) == entry


def test_unfolded_by_compares_end_offsets_with_the_next_offset_to_fold() -> None:
    ends = {0: 100, 1: 50, 2: 0, 3: 10}
    # Partition 2 has no events: it needs no progress record. Partition 3 has none yet.
    assert unfolded_by(ends, {0: 100, 1: 48}) == {1: 2, 3: 10}
    assert unfolded_by(ends, {0: 100, 1: 50, 3: 10}) == {}
    assert unfolded_by({}, {}) == {} and unfolded_by({0: 0}, {}) == {}


class FakeProgress:
    """FoldProgress that reports a scripted sequence of unfolded counts."""

    script: ClassVar[list[dict[int, int]]] = []

    def __init__(self, bootstrap: str, settings: WorkerSettings, agent: str = "aggregate") -> None:
        self.topic = caughtup.source_topic(settings, agent)
        self.changelog = progress_changelog(settings, agent)

    def __enter__(self) -> FakeProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def unfolded(self, timeout: float) -> dict[int, int]:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def test_wait_folded_returns_once_every_partition_is_folded(monkeypatch) -> None:
    monkeypatch.setattr(caughtup, "FoldProgress", FakeProgress)
    FakeProgress.script = [{1: 5}, {1: 2}, {}]
    wait_folded("kafka:9092", WORKER, time.monotonic() + 10, poll=0)
    assert FakeProgress.script == [{}]


def test_wait_folded_names_what_is_behind_on_timeout(monkeypatch) -> None:
    monkeypatch.setattr(caughtup, "FoldProgress", FakeProgress)
    FakeProgress.script = [{0: 3, 2: 40}]
    with pytest.raises(TimeoutError) as raised:
        wait_folded("kafka:9092", WORKER, time.monotonic() - 1, poll=0)
    assert str(raised.value) == ("worker unit-worker has not folded 43 records of unit-wait.events.v1 "
                                 "(by its unit-worker-progress-changelog): [0]=3, [2]=40")


@pytest.mark.parametrize("spikes", [True, False])
def test_wait_pipeline_folds_then_spike_agents_then_sink_twice(monkeypatch, spikes: bool) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(caughtup, "wait_folded", lambda bootstrap, worker, deadline, agent="aggregate":
                        calls.append(("folded", worker.app_id, agent)))
    monkeypatch.setattr(caughtup, "wait_caught_up",
                        lambda bootstrap, group, topics, deadline, settings: calls.append((group, *topics)))
    wait_pipeline("kafka:9092", WORKER, SINK, time.monotonic() + 10, spikes=spikes, settle=0)
    outputs = (SINK.rollups_topic, SINK.accepted_topic, SINK.dlq_topic)
    if spikes:
        one = [("folded", "unit-worker", "aggregate"), ("folded", "unit-worker", "spikes"),
               ("folded", "unit-worker", "district_spikes"), ("unit-sink", *outputs, SINK.alerts_topic)]
    else:
        one = [("folded", "unit-worker", "aggregate"), ("unit-sink", *outputs)]
    assert calls == one + one
    # Not faust's committed offsets: the worker's group is never asked.
    assert all(c[0] != "unit-worker" for c in calls)

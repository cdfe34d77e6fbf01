"""`hotspots wait` judges the worker by its progress changelog, on the session's real broker.

One test reads the real worker's changelog after a wait; the other plays the worker itself
(its own topic prefix, app id and sink group on the same broker), so that faust's committed
offsets can be left behind while the progress changelog says every event was folded: the
state a full fault run ended in, where a wait on committed offsets hung.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from hotspots import stack
from hotspots.caughtup import FoldProgress, progress_changelog, unfolded, wait_pipeline
from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import ProducerSettings, SinkSettings, WorkerSettings
from hotspots.topics import end_offsets, ensure_topics, lagging
from producers.publisher import EventPublisher
from tests.integration.conftest import cli_json, run_cli
from tests.integration.truth import random_events

pytestmark = pytest.mark.integration

YEAR = 2010  # this module's year of event time on the shared stack


def test_wait_returns_when_the_real_worker_s_progress_reaches_every_partition(live_stack) -> None:
    events = random_events(YEAR, 400, tag="wait", seed=10)
    settings = ProducerSettings(bootstrap=live_stack.bootstrap, topic_prefix=live_stack.topic_prefix)
    with EventPublisher(settings, source="test:wait") as publisher:
        assert publisher.send_all(events) == len(events)

    run_cli(live_stack, "wait", "--timeout", "180")

    worker = WorkerSettings(bootstrap=live_stack.bootstrap, topic_prefix=live_stack.topic_prefix)
    with FoldProgress(live_stack.bootstrap, worker) as progress:
        ends = progress.event_ends()
        folded = progress.folded()
    # The worker's own records, read as `wait` reads them: the next offset to fold of every
    # partition with events is its end offset.
    assert {p: folded.get(p) for p, end in ends.items() if end} == {p: e for p, e in ends.items() if e}
    assert unfolded(live_stack.bootstrap, worker) == {}
    summary = cli_json(live_stack, "query", "summary", "--from", f"{YEAR}-01-01", "--to", f"{YEAR}-12-31")
    assert summary["arrests"] == sum(e.kind == "arrest" for e in events)


def _commit(worker: WorkerSettings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = KafkaConsumer(**kafka_kwargs(worker), group_id=group, enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in offsets.items()})
    finally:
        consumer.close()


def _cli_wait(config: stack.StackConfig, worker: WorkerSettings, sink: SinkSettings,
              timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOTSPOTS_APP_ID": worker.app_id, "HOTSPOTS_SINK_GROUP": sink.sink_group}
    return subprocess.run([sys.executable, "-m", "hotspots.cli", "wait", "--data-dir", config.data_dir,
                           "--timeout", str(timeout)], capture_output=True, text=True, env=env,
                          timeout=timeout + 60, check=False)


def test_wait_trusts_the_progress_changelog_not_committed_offsets(live_stack, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"wait-{run}"
    common = {"bootstrap": live_stack.bootstrap, "topic_prefix": prefix,
              "partitions": live_stack.partitions}
    worker = WorkerSettings(**common, app_id=f"wait-worker-{run}")
    sink = SinkSettings(**common, sink_group=f"wait-sink-{run}")
    # A stack config for the CLI: the session's broker, this test's topics.
    config = dataclasses.replace(live_stack, data_dir=str(tmp_path), topic_prefix=prefix)
    config.save()
    ensure_topics(worker)
    changelog, spikes = progress_changelog(worker), progress_changelog(worker, "spikes")
    admin = KafkaAdminClient(**kafka_kwargs(worker))
    try:
        admin.create_topics([NewTopic(topic, worker.partitions, 1,
                                      topic_configs={"cleanup.policy": "compact"})
                             for topic in (changelog, spikes)])
    finally:
        admin.close()

    producer = KafkaProducer(**kafka_kwargs(worker), acks="all")
    try:
        # Events on partitions 0-2; none on 3, which then needs no progress record.
        for partition, count in ((0, 5), (1, 3), (2, 2)):
            for _ in range(count):
                producer.send(worker.events_topic, key=b"k", value=b"{}", partition=partition)
        producer.flush()
        assert unfolded(live_stack.bootstrap, worker) == {0: 5, 1: 3, 2: 2}

        # Progress as the worker writes it: key the partition number, value the next offset to
        # fold (JSON), in the changelog partition of that number; the last record counts.
        for partition, next_offset in ((0, 5), (1, 1), (1, 3), (2, 1)):
            producer.send(changelog, key=str(partition).encode(), value=str(next_offset).encode(),
                          partition=partition)
        producer.flush()
        assert unfolded(live_stack.bootstrap, worker) == {2: 1}
        with pytest.raises(TimeoutError, match=r"has not folded 1 records .*\[2\]=1"):
            wait_pipeline(live_stack.bootstrap, worker, sink, time.monotonic() + 3)
        proc = _cli_wait(config, worker, sink, 3)
        assert proc.returncode == 2 and "[2]=1" in proc.stderr, proc.stderr

        producer.send(changelog, key=b"2", value=b"2", partition=2)
        # An output for the sink (its committed offsets) and the spike agents (their own
        # progress changelog) to have read.
        producer.send(sink.accepted_topic, value=b"[]", partition=0)
        producer.flush()
        with pytest.raises(TimeoutError, match=r"not folded 1 records of .*accepted.* \(by its "
                                               r".*spikes_progress-changelog"):
            wait_pipeline(live_stack.bootstrap, worker, sink, time.monotonic() + 3)
        producer.send(spikes, key=b"0", value=b"1", partition=0)
        producer.flush()
    finally:
        producer.close()
    outputs = end_offsets(live_stack.bootstrap, [sink.accepted_topic])
    _commit(worker, sink.sink_group, outputs)

    # faust's committed offsets would say the worker is behind: its group committed nothing on
    # the events topic. The progress changelog says every event was folded, and wait believes it.
    events = end_offsets(live_stack.bootstrap, [worker.events_topic])
    assert lagging(live_stack.bootstrap, worker.app_id, events, worker) == {
        TopicPartition(worker.events_topic, p): n for p, n in ((0, 5), (1, 3), (2, 2))}
    wait_pipeline(live_stack.bootstrap, worker, sink, time.monotonic() + 30)
    proc = _cli_wait(config, worker, sink, 30)
    assert proc.returncode == 0 and proc.stdout.strip() == "caught up", proc.stderr

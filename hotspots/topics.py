"""Topic layout and offset bookkeeping (kafka-python admin), shared by `up`, `wait` and tests.

The helpers that take ``bootstrap`` take the Kafka security from ``settings``, by default
from the environment (HOTSPOTS_SECURITY_PROTOCOL, ...), as every stage does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import _Common


def topic_specs(settings: _Common) -> list[NewTopic]:
    n = settings.partitions
    return [
        NewTopic(settings.events_topic, n, 1),
        NewTopic(settings.accepted_topic, n, 1),
        # Envelopes of rollup states: the worker's own changelog is the compacted copy.
        NewTopic(settings.rollups_topic, n, 1),
        NewTopic(settings.dlq_topic, 1, 1),
        NewTopic(settings.transitions_topic, 1, 1),
        # Spike alerts: one partition keeps them in the order raised; few, and kept.
        NewTopic(settings.alerts_topic, 1, 1),
        NewTopic(settings.district_events_topic, n, 1),
        NewTopic(settings.history_topic, n, 1),  # hotspots backfill's, read by nothing else
    ]


def ensure_topics(settings: _Common) -> None:
    admin = KafkaAdminClient(**kafka_kwargs(settings))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # raced by another starter
                admin.create_topics(missing)
    finally:
        admin.close()


def _client(bootstrap: str, settings: _Common | None) -> dict[str, Any]:
    return kafka_kwargs(settings or _Common(), bootstrap)


def end_offsets(bootstrap: str, topics: Iterable[str],
                settings: _Common | None = None) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(**_client(bootstrap, settings), enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        return dict(consumer.end_offsets(tps)) if tps else {}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str,
                      settings: _Common | None = None) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(**_client(bootstrap, settings))
    try:
        offsets = admin.list_group_offsets([group]).get(group, {})
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        admin.close()


def lagging(bootstrap: str, group: str, targets: dict[TopicPartition, int],
            settings: _Common | None = None) -> dict[TopicPartition, int]:
    """Partitions where ``group`` has not yet committed up to ``targets``: {tp: missing}."""
    done = committed_offsets(bootstrap, group, settings)
    return {tp: end - max(done.get(tp, 0), 0) for tp, end in targets.items()
            if end > 0 and done.get(tp, 0) < end}


def wait_caught_up(bootstrap: str, group: str, topics: list[str], deadline: float,
                   settings: _Common | None = None) -> None:
    """Block until ``group`` has committed every offset that ``topics`` held when called.

    Then again while the topics grew meanwhile: the worker itself writes to the events topic
    (events a producer put on the wrong partition go home), so one snapshot can miss them.
    A few rounds only: under a steady live feed the topics never stop growing.
    """
    settings = settings or _Common()  # read the environment once, not per poll
    targets = end_offsets(bootstrap, topics, settings)
    rounds = 5
    while True:
        behind = lagging(bootstrap, group, targets, settings)
        if not behind:
            now = end_offsets(bootstrap, topics, settings)
            rounds -= 1
            if now == targets or rounds == 0:
                return
            targets = now
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group} still behind: "
                               + ", ".join(f"{tp.topic}[{tp.partition}]={n}" for tp, n in behind.items()))
        time.sleep(0.2)

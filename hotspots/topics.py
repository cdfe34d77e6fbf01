"""Topic layout and offset bookkeeping (kafka-python admin), shared by `up`, `wait` and tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from hotspots.settings import _Common


def topic_specs(settings: _Common) -> list[NewTopic]:
    n = settings.partitions
    return [
        NewTopic(settings.events_topic, n, 1),
        NewTopic(settings.accepted_topic, n, 1),
        # Rollup updates carry a key's full state: only the latest per key matters.
        NewTopic(settings.rollups_topic, n, 1, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(settings.dlq_topic, 1, 1),
        NewTopic(settings.transitions_topic, 1, 1),
    ]


def ensure_topics(settings: _Common) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # raced by another starter
                admin.create_topics(missing)
    finally:
        admin.close()


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        return dict(consumer.end_offsets(tps)) if tps else {}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets([group]).get(group, {})
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        admin.close()


def lagging(bootstrap: str, group: str, targets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Partitions where ``group`` has not yet committed up to ``targets``: {tp: missing}."""
    done = committed_offsets(bootstrap, group)
    return {tp: end - max(done.get(tp, 0), 0) for tp, end in targets.items()
            if end > 0 and done.get(tp, 0) < end}


def wait_caught_up(bootstrap: str, group: str, topics: list[str], deadline: float) -> None:
    """Block until ``group`` has committed every offset that ``topics`` held when called."""
    targets = end_offsets(bootstrap, topics)
    while True:
        behind = lagging(bootstrap, group, targets)
        if not behind:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group} still behind: "
                               + ", ".join(f"{tp.topic}[{tp.partition}]={n}" for tp, n in behind.items()))
        time.sleep(0.2)

"""streams.progress.first_offset against the real broker: what the worker asks the log when
the record that revealed a hole comes first again after a seek (streams/progress.py)."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from hotspots.kafka_security import kafka_kwargs
from hotspots.settings import WorkerSettings
from streams.progress import first_offset

pytestmark = pytest.mark.integration


def test_first_offset_finds_the_record_at_a_hole_or_the_first_left_after_it(live_stack) -> None:
    settings = WorkerSettings(bootstrap=live_stack.bootstrap, topic_prefix=live_stack.topic_prefix)
    topic = f"{live_stack.topic_prefix}.first-offset-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**kafka_kwargs(settings))
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        producer = KafkaProducer(**kafka_kwargs(settings), acks="all")
        for i in range(10):
            producer.send(topic, value=str(i).encode(), partition=0)
        producer.flush()
        producer.close()
        assert first_offset(settings, topic, 0, 4) == 4  # a hole here is faust's: read again
        assert first_offset(settings, topic, 0, 0) == 0
        # As retention does: the log now starts at 6, so a hole at 2 really has nothing to 5.
        admin.delete_records({TopicPartition(topic, 0): 6})
        assert first_offset(settings, topic, 0, 2) == 6
        assert first_offset(settings, topic, 0, 10, timeout_s=1.0) is None  # nothing yet
    finally:
        admin.delete_topics([topic])
        admin.close()

"""aiokafka forgets topics it learned from a fetch of every topic (hotspots/kafka_metadata.py).

Against the real broker: a batch queued for a topic the producer knew from its first,
all-topics metadata, then a send to a topic created since. As released, aiokafka then asks
for the new topic's metadata alone, drops the first topic's, and the queued batch never
leaves. With the worker's fix it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from hotspots import kafka_metadata

pytestmark = pytest.mark.integration


async def first_batch_lands(bootstrap: str, known: str,
                            admin: KafkaAdminClient) -> tuple[bool, bool]:
    """Whether a batch queued for ``known`` lands after a send to a topic made meanwhile, and
    whether the producer had forgotten ``known``'s partitions by then."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1000, acks="all")
    await producer.start()
    try:
        # Tracking no topic, the client fetches every topic's metadata: wait for ``known``.
        for _ in range(50):
            if producer.client.cluster.partitions_for_topic(known):
                break
            await producer.client.force_metadata_update()
            await asyncio.sleep(0.1)
        assert producer.client.cluster.partitions_for_topic(known)
        assert not producer.client._topics  # learned, not tracked
        queued = await producer.send(known, b"queued", partition=0)  # waits out the linger
        late = f"{known}-late"
        admin.create_topics([NewTopic(late, 1, 1)])
        await producer.send_and_wait(late, b"late", partition=0)
        forgotten = producer.client.cluster.partitions_for_topic(known) is None
        try:
            await asyncio.wait_for(asyncio.shield(queued), timeout=8)
        except TimeoutError:
            return False, forgotten
        return True, forgotten
    finally:
        producer.client.add_topic(known)  # what the fix does: the stranded batch can leave
        await asyncio.wait_for(producer.stop(), timeout=30)


@pytest.fixture
def known_topic(live_stack) -> Iterator[tuple[str, KafkaAdminClient]]:
    topic = f"{live_stack.topic_prefix}.metadata-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=live_stack.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    try:
        yield topic, admin
    finally:
        for made in (topic, f"{topic}-late"):
            with contextlib.suppress(KafkaError):  # "-late" is not made if the test failed first
                admin.delete_topics([made])
        admin.close()


def test_aiokafka_as_released_strands_a_batch(live_stack, known_topic) -> None:
    # If this starts failing, aiokafka has fixed it: hotspots/kafka_metadata.py can go.
    kafka_metadata.as_released()
    try:
        assert asyncio.run(first_batch_lands(live_stack.bootstrap, *known_topic)) == (False, True)
    finally:
        kafka_metadata.track_every_topic_sent()


def test_tracking_every_topic_sent_lands_it(live_stack, known_topic) -> None:
    kafka_metadata.track_every_topic_sent()
    assert asyncio.run(first_batch_lands(live_stack.bootstrap, *known_topic)) == (True, False)

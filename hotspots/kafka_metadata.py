"""Keep every topic the worker writes in its producer's metadata requests (aiokafka 0.14).

aiokafka tracks a topic for metadata only when it had no metadata for it at send time. A
client that tracks no topic yet fetches metadata for *every* topic, so a topic that existed
then is sent to without being tracked. The first send to a newer topic tracks that topic
alone; the next metadata response covers it alone, and the client forgets the partitions
of every other topic: batches already queued for them have no leader, the refreshes that
follow ask for the tracked topic only, and a flush waits for ever. A worker stopped this
way at the start of a replay (2026-11-29, bench run: batches for the seen changelog and the
accepted topic queued, the spikes progress changelog alone tracked). Tracking each topic on
every send keeps it in every later request. (kafka-python, the other stages' client, asks
for no topic at all while it tracks none, so it learns a topic only by tracking it.)
tests/integration/test_kafka_metadata.py shows the hang with aiokafka as released and none
with this.
"""

from __future__ import annotations

from typing import Any

from aiokafka.client import AIOKafkaClient

_RELEASED = AIOKafkaClient._wait_on_metadata


async def _wait_on_metadata(self: AIOKafkaClient, topic: str) -> Any:
    self._topics.add(topic)  # tracked: asked for in every later metadata request
    return await _RELEASED(self, topic)


def track_every_topic_sent() -> None:
    """Apply to every aiokafka client of the process (idempotent)."""
    AIOKafkaClient._wait_on_metadata = _wait_on_metadata  # type: ignore[method-assign]


def as_released() -> None:
    """Undo :func:`track_every_topic_sent` (the tests show aiokafka's own behaviour)."""
    AIOKafkaClient._wait_on_metadata = _RELEASED  # type: ignore[method-assign]

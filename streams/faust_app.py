"""One faust app configuration for both worker processes (rollups, and spike alerts).

The two run as separate apps, each its own consumer group: in one process the spike agents'
folds held up the aggregate's in the shared event loop (docs/bench.md, eighth pass).

faust 0.15 hard-codes its consumer's ``fetch_max_wait_ms`` to 1,500 ms. aiokafka leaves a
partition whose fetched records are not yet consumed out of its next fetch request, and the
broker holds that request until one of the partitions *in* it has data or the wait ends: an
app reading one topic at 2,000 events/s waited up to a second between folds for records that
were already on the broker. ``HOTSPOTS_FETCH_MAX_WAIT_MS`` (100) bounds that wait.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from hotspots.kafka_metadata import track_every_topic_sent
from hotspots.kafka_security import faust_credentials
from hotspots.settings import WorkerSettings

_RELEASED = AIOKafkaConsumerThread._create_worker_consumer
FETCH_MAX_WAIT = "hotspots_fetch_max_wait_ms"  # the app attribute the consumer thread reads


def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _RELEASED(self, transport)
    wait = getattr(self.app, FETCH_MAX_WAIT, None)
    if wait is not None:
        consumer._fetch_max_wait_ms = wait  # read when the consumer starts its fetcher
    return consumer


def new_app(settings: WorkerSettings, app_id: str, **conf: Any) -> faust.App:
    """A faust app with the worker's broker, producer and consumer settings."""
    track_every_topic_sent()  # else a send to a new topic can stall every other (see there)
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=faust_credentials(settings),  # HOTSPOTS_SECURITY_*; None: plaintext
        store="memory://",
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        # Without linger every changelog write is its own produce request: ~10x slower.
        producer_linger=settings.linger_ms / 1000,
        producer_max_batch_size=1 << 20,
        consumer_auto_offset_reset="earliest",
        **conf,
    )
    setattr(app, FETCH_MAX_WAIT, settings.fetch_max_wait_ms)
    return app

"""streams.faust_app: the settings both faust apps share."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from hotspots.settings import WorkerSettings
from streams.alerts import build_spikes_app
from streams.app import build_app


def fetch_wait(app) -> int:  # type: ignore[no-untyped-def]
    """The fetch_max_wait_ms of the consumer the app's consumer thread would start."""
    async def made() -> int:
        thread = AIOKafkaConsumerThread(app.consumer)
        return int(thread._create_worker_consumer(app.transport)._fetch_max_wait_ms)
    return asyncio.run(made())


def test_each_app_bounds_the_brokers_fetch_wait(tmp_path: Path) -> None:
    # faust's own is 1,500 ms: with one source topic, folds waited up to a second for
    # records already on the broker (docs/bench.md, eighth pass).
    assert fetch_wait(build_app(WorkerSettings(data_dir=tmp_path))) == 100
    settings = WorkerSettings(data_dir=tmp_path, fetch_max_wait_ms=250)
    assert fetch_wait(build_app(settings)) == 250
    assert fetch_wait(build_spikes_app(settings)) == 250

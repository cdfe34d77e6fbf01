"""`python -m sinks serve`: the sink loop in a thread and the HTTP API in the main thread."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import uvicorn

from hotspots.metrics import mark_up
from hotspots.settings import SinkSettings
from sinks.api import build_api
from sinks.sink import SinkLoop
from sinks.store import Store

log = logging.getLogger("hotspots.sink")


def serve() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s %(message)s")
    settings = SinkSettings()
    store = Store(settings)
    loop = SinkLoop(store, settings)

    def run_loop() -> None:
        try:
            loop.run()
        except Exception:
            log.exception("sink loop died; stopping the process so the supervisor sees it")
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run_loop, name="sink", daemon=True)
    thread.start()

    def health() -> dict[str, object]:
        return {"ok": loop.healthy.is_set() and thread.is_alive(), "embedded": store.embedded,
                "batches": loop.flushed_batches, "rows": loop.flushed_rows}

    scheduler = None
    if settings.ehsa_interval > 0:
        from sinks.ehsa import kafka_publisher
        from sinks.schedule import EhsaScheduler

        scheduler = EhsaScheduler(store, settings.ehsa_interval, lambda: kafka_publisher(settings))
        scheduler.start()

    api = build_api(store, health)  # serves /metrics too: Prometheus scrapes the API's port
    mark_up("sink")
    uvicorn.run(api, host=settings.api_host, port=settings.api_port, log_level="warning")
    if scheduler is not None:
        scheduler.stop.set()
    loop.stop.set()  # uvicorn returned on SIGTERM/SIGINT: flush the last batch and commit
    thread.join(timeout=30)
    store.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        print("usage: python -m sinks serve", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve())

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
from sinks.sink import SinkLoop, SupervisedLoop
from sinks.store import Store

log = logging.getLogger("hotspots.sink")


def serve() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s %(message)s")
    settings = SinkSettings()
    store = Store(settings)
    # Started again in this process when it fails (a broker outage): the API stays up.
    loop = SupervisedLoop(lambda: SinkLoop(store, settings))

    def run_loop() -> None:
        try:
            loop.run()
        except Exception:
            log.exception("sink loop died while stopping")
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run_loop, name="sink", daemon=True)
    thread.start()

    def health() -> dict[str, object]:
        return {"ok": loop.healthy.is_set() and thread.is_alive(), "embedded": store.embedded,
                "batches": loop.flushed_batches, "rows": loop.flushed_rows,
                "restarts": loop.restarts}

    scheduler = None
    if settings.ehsa_interval > 0:
        from sinks.ehsa import kafka_publisher
        from sinks.schedule import EhsaScheduler

        scheduler = EhsaScheduler(store, settings.ehsa_interval, lambda: kafka_publisher(settings))
        scheduler.start()

    webhook = None
    if settings.webhook_url:  # spike alerts posted as signed JSON, in its own consumer group
        from sinks.webhook import WebhookLoop

        webhook = WebhookLoop(settings).start()

    # Access and audit (sinks.auth, sinks.audit): on a store's first start, an admin token
    # for whoever started it, in <data_dir>/run/operator-token, which the CLI reads.
    import getpass

    from hotspots.tokens import ensure_operator_token
    from sinks.audit import AuditLog
    from sinks.auth import Access

    access = Access.from_settings(settings)
    operator = ensure_operator_token(access.tokens, settings.run_dir, getpass.getuser())
    if operator is not None:
        log.info("first start: an admin API token for the operator is in %s", operator)
    audit = AuditLog(store, settings.audit_retention_days)
    api = build_api(store, health, access=access, audit=audit)  # serves /metrics too
    mark_up("sink")
    uvicorn.run(api, host=settings.api_host, port=settings.api_port, log_level="warning")
    if scheduler is not None:
        scheduler.stop.set()
    if webhook is not None:
        webhook.close()
    loop.stop()  # uvicorn returned on SIGTERM/SIGINT: flush the last batch and commit
    thread.join(timeout=30)
    audit.close()  # no request is in flight any more: write the queued audit entries
    store.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        print("usage: python -m sinks serve", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve())

"""kill -9 the worker mid-stream and restart it: every count still equals the truth."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from hotspots import stack
from hotspots.settings import ProducerSettings
from producers.publisher import EventPublisher
from tests.integration.conftest import cli_json, log_tail, run_cli
from tests.integration.truth import random_events, weekly_truth

pytestmark = pytest.mark.integration


def test_worker_killed_mid_stream_recovers_exact_counts(live_stack) -> None:
    year = 2017
    events = random_events(year, 20000, tag="kill", seed=11)
    settings = ProducerSettings(bootstrap=live_stack.bootstrap, topic_prefix=live_stack.topic_prefix)

    def produce() -> None:
        with EventPublisher(settings, source="test:kill") as publisher:
            for i in range(0, len(events), 1000):
                publisher.send_all(events[i:i + 1000])
                time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(2.0)
    assert stack.stop_service(live_stack, "worker", sig=signal.SIGKILL)
    producer.join()
    stack.up(live_stack, timeout=240, echo=lambda _m: None)
    run_cli(live_stack, "wait", "--timeout", "300")

    rows = cli_json(live_stack, "query", "cells", "--from", f"{year}-01-01", "--to", f"{year}-12-31",
                    "--res", "6")
    got = {(r["cell"], r["period_start"], r["kind"]): r["count"] for r in rows}
    assert got == dict(weekly_truth(events, 6)), log_tail(live_stack, "worker")

"""sinks.webhook: signatures, and delivery to a real local HTTP receiver with retries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from bench.receiver import Receiver
from hotspots.metrics import WEBHOOK
from hotspots.settings import SinkSettings
from sinks.webhook import SIGNATURE, TIMESTAMP, Offsets, WebhookLoop, WebhookSender, sign, verify

SECRET = b"unit-test-secret"


def alert(n: int, age: timedelta = timedelta(0)) -> dict:
    return {"alert_id": f"id-{n}", "area_type": "cell", "area": "87194e0d3ffffff", "res": 7,
            "kind": "arrest", "period": "week", "period_start": "2087-03-03", "observed": 6,
            "expected": 0.2, "p_value": 1e-6, "method": "poisson-week",
            "first_seen": (datetime.now(UTC) - age).isoformat(), "triggering_event_id": f"e-{n}"}


def test_signature_is_an_hmac_of_timestamp_and_body():
    body = orjson.dumps(alert(1))
    sig = sign(SECRET, 1_700_000_000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(SECRET, "1700000000", body, sig, now=1_700_000_100)
    assert not verify(SECRET, "1700000000", body + b" ", sig, now=1_700_000_100)  # body changed
    assert not verify(SECRET, "1700000001", body, sig, now=1_700_000_100)  # timestamp changed
    assert not verify(b"other", "1700000000", body, sig, now=1_700_000_100)
    assert not verify(SECRET, "1700000000", body, sig, now=1_700_001_000)  # a replay, too old
    assert not verify(SECRET, "soon", body, sig)


def count(outcome: str) -> float:
    return WEBHOOK.labels(outcome)._value.get()


def until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert check()


def test_delivery_retries_with_backoff_without_holding_up_the_queue():
    done: list = []
    before = {o: count(o) for o in ("delivered", "stale", "duplicate")}
    with Receiver(SECRET, fail_first=2) as receiver:
        sender = WebhookSender(receiver.url, SECRET, backoff=0.2, done=done.append).start()
        try:
            started = time.monotonic()
            for n in range(5):
                sender.submit(alert(n), ("tp", n))
            sender.submit(alert(0), ("tp", 5))  # the same alert again: posted once
            sender.submit(alert(9, age=timedelta(hours=2)), ("tp", 6))  # too old to page for
            until(lambda: len(done) == 7)
            elapsed = time.monotonic() - started
        finally:
            sender.close()
    assert sorted(d.key for d in receiver.accepted) == [f"id-{n}" for n in range(5)]
    assert all(d.attempt == 3 for d in receiver.accepted)  # two 503s, then accepted
    # Backoffs of 0.2 s then 0.4 s run side by side, not one alert after another (5 x 0.6 s).
    assert elapsed < 2.5
    assert receiver.refused == 0 and sorted(t[1] for t in done) == list(range(7))
    assert count("delivered") - before["delivered"] == 5
    assert count("duplicate") - before["duplicate"] == 1 and count("stale") - before["stale"] == 1


def test_headers_are_what_a_receiver_checks():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sender = WebhookSender("http://receiver.invalid/hook", SECRET)
    sender.client = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        sender.queue.put((alert(3), None))
        sender.start()
        until(lambda: len(seen) == 1)
    finally:
        sender.close()
    (request,) = seen
    assert request.headers["Idempotency-Key"] == "id-3"
    assert request.headers["Content-Type"] == "application/json"
    assert verify(SECRET, request.headers[TIMESTAMP], request.content, request.headers[SIGNATURE])
    assert orjson.loads(request.content) == alert(3) | {"first_seen": orjson.loads(request.content)[
        "first_seen"]}


def test_a_refusal_is_final_and_a_dead_receiver_is_given_up_on():
    before = count("failed")
    with Receiver(SECRET, fail_first=0) as receiver:
        sender = WebhookSender(receiver.url, b"wrong secret", backoff=0.01)  # 401: not retried
        done: list = []
        sender.done = done.append
        sender.start()
        sender.submit(alert(1), 1)
        until(lambda: done == [1])
        sender.close()
    assert receiver.refused == 1 and receiver.accepted == []
    dead = WebhookSender("http://127.0.0.1:9/hook", SECRET, attempts=3, backoff=0.01, timeout=0.5)
    done = []
    dead.done = done.append
    dead.start()
    dead.submit(alert(2), 2)
    until(lambda: done == [2])
    dead.close()
    assert count("failed") - before == 2


def test_offsets_commit_up_to_the_oldest_alert_still_in_flight():
    offsets = Offsets()
    for n in range(4):
        offsets.taken("tp", n)
    offsets.finished(("tp", 1))
    offsets.finished(("tp", 2))
    assert offsets.due() == {"tp": 0}
    offsets.finished(("tp", 0))
    assert offsets.due() == {"tp": 3}
    assert offsets.due() == {}  # nothing new
    offsets.finished(("tp", 3))
    assert offsets.due() == {"tp": 4}


def test_a_webhook_needs_its_secret():
    with pytest.raises(ValueError, match="HOTSPOTS_WEBHOOK_SECRET"):
        WebhookLoop(SinkSettings(webhook_url="http://127.0.0.1:9/hook", webhook_secret=None))
    settings = SinkSettings(webhook_url="http://x.invalid/", webhook_secret="s3cret")
    assert "s3cret" not in str(settings.webhook_secret)  # `hotspots config` shows no secret

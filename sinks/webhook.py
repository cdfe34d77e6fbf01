"""POST each spike alert to HOTSPOTS_WEBHOOK_URL as signed JSON, with retries.

The request, per alert (streams.alerts.alert_record):

    POST <HOTSPOTS_WEBHOOK_URL>
    Content-Type: application/json
    Idempotency-Key: <alert_id>          the same spike keeps its id if it is ever re-sent
    X-Hotspots-Timestamp: <unix seconds>
    X-Hotspots-Signature: sha256=<hex HMAC-SHA256(HOTSPOTS_WEBHOOK_SECRET, timestamp "." body)>

A receiver recomputes the HMAC over the bytes it received, compares in constant time and
refuses old timestamps (replays): :func:`verify` does all three. Delivery is at least once:
the sink process reads the alerts topic in its own consumer group (not the sink's, so a slow
receiver never holds up the store's commits) and commits an alert's offset once it was
delivered or given up on. Failures are retried with exponential backoff (5xx, 408, 429,
timeouts, refused connections); other 4xx answers are final. Alerts wait in a bounded queue
(retries included); when it is full the consumer pauses its partitions until there is room.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from hotspots.metrics import WEBHOOK, WEBHOOK_RETRIES
from hotspots.settings import SinkSettings

log = logging.getLogger(__name__)

SIGNATURE = "X-Hotspots-Signature"
TIMESTAMP = "X-Hotspots-Timestamp"
RETRY_STATUS = frozenset({408, 429})
MAX_AGE = timedelta(hours=1)  # an alert first read later than this (a new webhook) is not posted
REMEMBERED = 10_000  # alert ids delivered lately: a re-raised alert is posted once

Token = Any  # what the caller needs back when an alert is done (a topic-partition and offset)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, now: float | None = None,
           tolerance: float = 300.0) -> bool:
    """True when ``signature`` signs ``timestamp`` and ``body`` and the timestamp is recent."""
    try:
        at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, at, body), signature)


@dataclass(order=True)
class _Retry:
    due: float
    seq: int
    alert: dict[str, Any] = field(compare=False)
    token: Token = field(compare=False)
    attempt: int = field(compare=False)
    delay: float = field(compare=False)


class WebhookSender:
    """One delivery thread: new alerts from a queue, retries from a heap ordered by due time,
    so an alert waiting out its backoff never holds up the next one."""

    def __init__(self, url: str, secret: bytes, *, attempts: int = 6, backoff: float = 0.5,
                 max_backoff: float = 30.0, timeout: float = 5.0, capacity: int = 1000,
                 done: Callable[[Token], None] | None = None) -> None:
        self.url, self.secret = url, secret
        self.attempts, self.backoff, self.max_backoff = attempts, backoff, max_backoff
        self.capacity = capacity
        self.queue: queue.Queue[tuple[dict[str, Any], Token]] = queue.Queue(capacity)
        self.retries: list[_Retry] = []  # a heap, touched by the delivery thread only
        self.seq = itertools.count()
        self.done = done or (lambda _token: None)
        self.stop = threading.Event()
        self.client = httpx.Client(timeout=timeout)
        self.delivered: OrderedDict[str, None] = OrderedDict()
        self.inflight: set[str] = set()  # a copy of an alert being retried is not posted again
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def start(self) -> WebhookSender:
        self.thread.start()
        return self

    def full(self) -> bool:
        """Alerts queued or waiting to be retried fill the capacity: take no more for now."""
        return self.queue.qsize() + len(self.retries) >= self.capacity

    def submit(self, alert: dict[str, Any], token: Token = None) -> None:
        """Queue an alert; blocks while the queue is full (never called from the sink loop)."""
        self.queue.put((alert, token))

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        self.client.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            wait = 0.2
            if self.retries:
                wait = min(wait, max(self.retries[0].due - time.monotonic(), 0.0))
            try:
                alert, token = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
                job = _Retry(0.0, next(self.seq), alert, token, 0, self.backoff)
            except queue.Empty:
                if not self.retries or self.retries[0].due > time.monotonic():
                    continue
                job = heapq.heappop(self.retries)
            try:
                outcome = self._attempt(job)
            except Exception:  # a malformed record: logged and given up on; the thread goes on
                log.exception("webhook cannot post %r", job.alert)
                outcome = "failed"
            if outcome == "retry":
                job.due, job.delay = time.monotonic() + job.delay, min(job.delay * 2, self.max_backoff)
                heapq.heappush(self.retries, job)
                continue
            WEBHOOK.labels(outcome).inc()
            if outcome in ("delivered", "failed"):
                self.inflight.discard(str(job.alert["alert_id"]))
            self.done(job.token)

    def _attempt(self, job: _Retry) -> str:
        """One POST: "delivered", "failed", "retry", or (first attempt only) "stale"/"duplicate"."""
        alert_id = str(job.alert["alert_id"])
        if job.attempt == 0:
            if alert_id in self.delivered or alert_id in self.inflight:
                return "duplicate"
            if datetime.now(UTC) - datetime.fromisoformat(job.alert["first_seen"]) > MAX_AGE:
                return "stale"
            self.inflight.add(alert_id)
        job.attempt += 1
        body = orjson.dumps(job.alert)
        now = int(time.time())
        headers = {"Content-Type": "application/json", "Idempotency-Key": alert_id,
                   TIMESTAMP: str(now), SIGNATURE: sign(self.secret, now, body)}
        try:
            response = self.client.post(self.url, content=body, headers=headers)
            if response.is_success:
                self._remember(alert_id)
                return "delivered"
            problem = f"HTTP {response.status_code}"
            final = response.status_code < 500 and response.status_code not in RETRY_STATUS
        except httpx.HTTPError as exc:
            problem, final = f"{type(exc).__name__}: {exc}", False
        if final or job.attempt >= self.attempts:
            log.error("webhook gave up on alert %s after %d attempt(s): %s", alert_id, job.attempt,
                      problem)
            return "failed"
        WEBHOOK_RETRIES.inc()
        log.warning("webhook attempt %d for alert %s failed (%s); retrying in %.1fs", job.attempt,
                    alert_id, problem, job.delay)
        return "retry"

    def _remember(self, alert_id: str) -> None:
        self.delivered[alert_id] = None
        while len(self.delivered) > REMEMBERED:
            self.delivered.popitem(last=False)


class Offsets:
    """Which offsets are safe to commit when alerts finish out of order (retries): per
    partition, up to the oldest alert still in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[Any, set[int]] = {}  # topic-partition -> offsets in flight
        self.next: dict[Any, int] = {}  # topic-partition -> last offset taken + 1
        self.committed: dict[Any, int] = {}

    def taken(self, tp: Any, offset: int) -> None:
        with self.lock:
            self.open.setdefault(tp, set()).add(offset)
            self.next[tp] = max(self.next.get(tp, 0), offset + 1)

    def finished(self, token: Token) -> None:
        tp, offset = token
        with self.lock:
            self.open.get(tp, set()).discard(offset)

    def due(self) -> dict[Any, int]:
        """Offsets to commit now (each partition's oldest in-flight offset, or its next one)."""
        with self.lock:
            out = {tp: min(self.open[tp]) if self.open.get(tp) else nxt for tp, nxt in self.next.items()}
            out = {tp: off for tp, off in out.items() if off > self.committed.get(tp, -1)}
            self.committed.update(out)
        return out


class WebhookLoop:
    """Reads the alerts topic in its own group; commits an offset once its alert is done."""

    def __init__(self, settings: SinkSettings, sender: WebhookSender | None = None) -> None:
        from kafka import KafkaConsumer

        from hotspots.kafka_security import kafka_kwargs

        if not settings.webhook_url or settings.webhook_secret is None:
            raise ValueError("HOTSPOTS_WEBHOOK_URL needs HOTSPOTS_WEBHOOK_SECRET: every body is signed")
        self.offsets = Offsets()
        self.sender = sender or WebhookSender(
            settings.webhook_url, settings.webhook_secret.get_secret_value().encode())
        self.sender.done = self.offsets.finished
        self.stop = threading.Event()
        self.topic = settings.alerts_topic
        # Offsets are kept under a group of its own, but partitions are assigned, not
        # subscribed: one sink process, no rebalancing to wait for (or to hang in).
        self.consumer = KafkaConsumer(
            **kafka_kwargs(settings), group_id=f"{settings.sink_group}-webhook",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=100)
        self.thread = threading.Thread(target=self._run, name="webhook-consumer", daemon=True)

    def start(self) -> WebhookLoop:
        self.sender.start()
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.sender.close()

    def _commit(self) -> None:
        from kafka import OffsetAndMetadata
        from kafka.errors import KafkaError

        due = self.offsets.due()
        if due:
            try:
                self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in due.items()})
            except KafkaError as exc:  # e.g. a rebalance: those alerts are posted again, same key
                log.warning("webhook offsets not committed: %s", exc)

    def _assign(self) -> None:
        from kafka import TopicPartition

        while not self.stop.is_set():
            partitions = self.consumer.partitions_for_topic(self.topic)
            if partitions:
                self.consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
                return
            self.stop.wait(1.0)  # the topic is made by `hotspots up` (topics.py): not yet

    def _run(self) -> None:
        paused = False
        try:
            self._assign()
            while not self.stop.is_set():
                if self.sender.full() != paused:  # at capacity: keep polling, fetch nothing
                    paused = not paused
                    parts = self.consumer.assignment()
                    (self.consumer.pause if paused else self.consumer.resume)(*parts)
                for tp, messages in self.consumer.poll(timeout_ms=200).items():
                    for message in messages:
                        self.offsets.taken(tp, message.offset)
                        try:
                            alert = orjson.loads(message.value)
                        except orjson.JSONDecodeError:
                            log.error("not an alert at %s@%d: skipped", tp, message.offset)
                            self.offsets.finished((tp, message.offset))
                            continue
                        self.sender.submit(alert, (tp, message.offset))
                self._commit()
        except Exception:
            log.exception("webhook consumer stopped; alerts are no longer posted")
        finally:
            try:
                self._commit()
            finally:
                self.consumer.close(autocommit=False)

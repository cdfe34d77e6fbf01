"""A local webhook receiver for the tests and the pipeline harness: a real HTTP server.

It checks every request's signature (sinks.webhook.verify), answers 503 to the first
``fail_first`` attempts of each alert (so the sender's retries are exercised) and records
what it accepted, with the time it arrived.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from sinks.webhook import SIGNATURE, TIMESTAMP, verify


@dataclass
class Delivery:
    alert: dict[str, Any]
    key: str
    at: float  # time.time() when it was accepted
    attempt: int


@dataclass
class Receiver:
    secret: bytes
    fail_first: int = 1
    attempts: dict[str, int] = field(default_factory=dict)  # per Idempotency-Key
    accepted: list[Delivery] = field(default_factory=list)
    refused: int = 0  # bad signatures
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                status = receiver.handle(body, key, self.headers.get(TIMESTAMP, ""),
                                         self.headers.get(SIGNATURE, ""))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def handle(self, body: bytes, key: str, timestamp: str, signature: str) -> int:
        with self.lock:
            if not verify(self.secret, timestamp, body, signature):
                self.refused += 1
                return 401
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            if attempt <= self.fail_first:
                return 503
            self.accepted.append(Delivery(orjson.loads(body), key, time.time(), attempt))
            return 200

    def keys(self) -> list[str]:
        with self.lock:
            return [d.key for d in self.accepted]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

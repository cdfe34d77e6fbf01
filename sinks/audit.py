"""The audit log (DPA 2018 s.62): who consulted or disclosed what, when, and why.

Every authenticated API request under /v1 (or refused one) and every CLI query that opens the
store directly becomes one row of ``audit_log``: who (token name, or ``local:<os user>``), when
(UTC), what (method and route, or the CLI command, with its parameters), the stated
justification, the recipient of a disclosure when one is named, the client address and the
outcome (HTTP status). Request bodies are never recorded (a sign-in carries a token).

Retention is a ClickHouse TTL on the table, HOTSPOTS_AUDIT_RETENTION_DAYS (6 years by default),
re-applied at start when the setting changes. Rows are written in batches by a background
thread, so a query never waits for its audit row; ``close()`` writes what is queued, and the
sink calls it after the API has stopped taking requests, so a normal shutdown loses nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, HTTPException, Query

from sinks.store import Store

log = logging.getLogger("hotspots.audit")

TABLE = "audit_log"
SCHEMA = """CREATE TABLE IF NOT EXISTS {{db}}.audit_log (
  at DateTime64(3, 'UTC'),
  who String,
  scope LowCardinality(String),
  via LowCardinality(String),
  action String,
  params String,
  justification String,
  recipient String,
  client String,
  status UInt16
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, who)
TTL {ttl}"""
MAX_TEXT = 500  # a justification or recipient longer than this is cut (and says so)


def ttl(days: int) -> str:
    return f"toDateTime(at) + toIntervalDay({int(days)})"


def clean_text(value: str | None) -> str:
    """A header value as stated: percent-decoded (the CLI encodes non-ASCII), control characters
    out, whitespace collapsed, at most MAX_TEXT characters."""
    if not value:
        return ""
    text = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", unquote(value)).split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    who: str
    scope: str
    via: str  # token, session (the map), cli (the store opened directly), none (refused)
    action: str
    params: str  # JSON object
    justification: str
    recipient: str
    client: str
    status: int


COLUMNS = tuple(f.name for f in fields(AuditEntry))


def ensure_table(store: Store, days: int) -> None:
    """Create the table, or bring its TTL to ``days`` if the setting changed."""
    store.command(SCHEMA.format(ttl=ttl(days)).format(db=store.database))
    rows = store.query("SELECT engine_full FROM system.tables WHERE database = %(db)s "
                       "AND name = %(table)s", {"db": store.database, "table": TABLE})
    found = re.search(r"toIntervalDay\((\d+)\)", rows[0]["engine_full"]) if rows else None
    if found is None or int(found.group(1)) != int(days):
        store.command(f"ALTER TABLE {store.database}.{TABLE} MODIFY TTL {ttl(days)}")


def write(store: Store, retention_days: int, batch: list[AuditEntry]) -> None:
    """Write entries now (the CLI's one query when it opens the store itself)."""
    ensure_table(store, retention_days)
    store.insert(TABLE, [astuple(e) for e in batch], COLUMNS)


class AuditLog:
    """Queues entries and writes them in batches from a background thread."""

    def __init__(self, store: Store, retention_days: int, interval: float = 1.0,
                 batch: int = 1000) -> None:
        self.store, self.interval, self.batch = store, interval, batch
        ensure_table(store, retention_days)
        self._queue: list[AuditEntry] = []
        self._lock = threading.Lock()  # the queue
        self._writing = threading.Lock()  # one insert at a time, in order
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            self._queue.append(entry)
            closed = self._stop.is_set()
            if not closed and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
                self._thread.start()
            if len(self._queue) >= self.batch:
                self._wake.set()
        if closed:  # after close() (e.g. the CLI's one query): write it now, never drop it
            self.flush()

    def flush(self) -> None:
        """Write every queued entry now (GET /v1/audit calls it, so the list is current)."""
        with self._writing:
            with self._lock:
                pending, self._queue = self._queue, []
            if not pending:
                return
            try:
                self.store.insert(TABLE, [astuple(e) for e in pending], COLUMNS)
            except Exception:
                with self._lock:  # keep them for the next attempt, in order
                    self._queue = pending + self._queue
                raise

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("audit entries not written yet; retrying")

    def close(self) -> None:
        """Stop the writer and write what is queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()


def entries(store: Store, since: datetime | None = None, until: datetime | None = None,
            who: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Audit rows, newest first; ``since``/``until`` must be timezone-aware."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"{name} has no UTC offset: give one (e.g. 2025-01-31T00:00:00Z)")
    rows = store.query(
        """SELECT at, who, scope, via, action, params, justification, recipient, client, status
           FROM {db}.audit_log
           WHERE (%(since)s = 0 OR at >= fromUnixTimestamp64Milli(%(since)s))
             AND (%(until)s = 0 OR at < fromUnixTimestamp64Milli(%(until)s))
             AND (%(who)s = '' OR who = %(who)s)
           ORDER BY at DESC, who LIMIT %(limit)s""",
        {"since": int(since.timestamp() * 1000) if since else 0,
         "until": int(until.timestamp() * 1000) if until else 0,
         "who": who or "", "limit": int(limit)})
    return [{**r, "at": r["at"].astimezone(UTC).isoformat(timespec="milliseconds"),
             "params": json.loads(r["params"] or "{}")} for r in rows]


# --- the API side -------------------------------------------------------------------------

def audit_router(store: Store | None, audit: AuditLog | None) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/audit")
    def get_audit(since: datetime | None = None, until: datetime | None = None,
                  who: str | None = None, limit: int = Query(100, ge=1, le=10_000)) -> Any:
        """Audit entries, newest first (admin). ``since``/``until``: ISO 8601 with an offset."""
        if store is None:
            raise HTTPException(status_code=503, detail="no store")
        if audit is not None:
            audit.flush()  # what is still queued, this request's predecessors included
        try:
            return entries(store, since, until, who, limit)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    return router


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
CONTEXT = "hotspots.audit"  # the scope key where sinks.auth leaves who, scope, why


@dataclass(frozen=True)
class RequestContext:
    who: str
    scope: str
    via: str
    justification: str
    recipient: str


def _params(scope: Scope) -> str:
    query: dict[str, Any] = {}
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                keep_blank_values=True):
        query.setdefault(key, []).append(value)
    return json.dumps({k: v[0] if len(v) == 1 else v for k, v in sorted(query.items())},
                      ensure_ascii=False)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


class AuditMiddleware:
    """Pure ASGI (streams pass through untouched): after each request that ``audited(scope)``
    selects, queue an entry with the response's status."""

    def __init__(self, app: ASGIApp, audit: AuditLog, audited: Callable[[Scope], bool]) -> None:
        self.app, self.audit, self.audited = app, audit, audited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if self.audited(scope):
                self.audit.record(self._entry(scope, status))

    @staticmethod
    def _entry(scope: Scope, status: int) -> AuditEntry:
        ctx: RequestContext | None = scope.get(CONTEXT)
        client = scope.get("client")
        return AuditEntry(
            at=datetime.now(UTC), who=ctx.who if ctx else "", scope=ctx.scope if ctx else "",
            via=ctx.via if ctx else "none", action=f"{scope['method']} {scope['path']}",
            params=_params(scope),
            justification=ctx.justification if ctx else clean_text(
                _header(scope, b"x-justification")),
            recipient=ctx.recipient if ctx else clean_text(_header(scope, b"x-recipient")),
            client=f"{client[0]}" if client else "", status=status)

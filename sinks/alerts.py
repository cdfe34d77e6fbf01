"""Spike alerts in the store: the sink's route from the alerts topic, and the list query."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import orjson

from hotspots.contract import KINDS
from hotspots.periods import LONDON
from sinks.queries import QueryError
from sinks.store import Store

ALERT_COLUMNS = ("alert_id", "area_type", "area", "res", "kind", "period", "period_start",
                 "observed", "expected", "p_value", "method", "first_seen", "triggering_event_id")
AREA_TYPES = ("cell", "district")
MAX_LIMIT = 10_000


def alert_rows(key: bytes, value: bytes) -> list[tuple[Any, ...]]:
    """A record of the alerts topic (streams.alerts.alert_record) as one table row."""
    row = orjson.loads(value)
    row["period_start"] = date.fromisoformat(row["period_start"])
    row["first_seen"] = datetime.fromisoformat(row["first_seen"])
    return [tuple(row[c] for c in ALERT_COLUMNS)]


def parse_since(text: str) -> datetime:
    """A date (its midnight in Europe/London) or an ISO 8601 time with its UTC offset."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), LONDON)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"since {text!r} is neither a date nor an ISO 8601 time") from None
    if at.tzinfo is None:
        raise QueryError(f"since {text!r} has no UTC offset (e.g. +00:00)")
    return at


def list_alerts(store: Store, since: datetime | None = None, kind: str | None = None,
                area_type: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Alerts first seen at or after ``since``, newest first; one row per alert_id."""
    if kind is not None and kind not in KINDS:
        raise QueryError(f"kind {kind!r} unknown; choose one of {KINDS}")
    if area_type is not None and area_type not in AREA_TYPES:
        raise QueryError(f"area type {area_type!r} unknown; choose one of {AREA_TYPES}")
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
    if since is not None and since.tzinfo is None:
        raise QueryError("since needs a UTC offset")
    rows = store.query(
        f"""SELECT {', '.join(ALERT_COLUMNS)}, stored_at FROM {{db}}.alerts FINAL
           WHERE first_seen >= fromUnixTimestamp64Milli(%(since)s, 'UTC')
             AND (%(kind)s = '' OR kind = %(kind)s)
             AND (%(area_type)s = '' OR area_type = %(area_type)s)
           ORDER BY first_seen DESC, alert_id LIMIT %(limit)s""",
        {"since": int(since.timestamp() * 1000) if since else 0, "kind": kind or "",
         "area_type": area_type or "", "limit": int(limit)})
    return [{"first_seen": _utc(r["first_seen"]), "area_type": r["area_type"],
             "area": r["area"], "res": int(r["res"]), "kind": r["kind"], "period": r["period"],
             "period_start": r["period_start"].isoformat(), "observed": int(r["observed"]),
             "expected": float(r["expected"]), "p_value": float(r["p_value"]),
             "method": r["method"], "triggering_event_id": r["triggering_event_id"],
             "alert_id": r["alert_id"], "stored_at": _utc(r["stored_at"])} for r in rows]


def _utc(at: datetime) -> str:
    """ISO 8601 with its offset: the engine may hand back UTC times without a zone."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()

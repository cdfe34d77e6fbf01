"""HTTP route of the spike alerts: GET /v1/alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from sinks.alerts import MAX_LIMIT, list_alerts, parse_since
from sinks.queries import QueryError
from sinks.store import Store


def alerts_router(store: Store) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/alerts")
    def get_alerts(since: str | None = Query(None, description="A date (London midnight) or an "
                                             "ISO 8601 time with its offset: alerts first seen since."),
                   kind: str | None = None,
                   area_type: str | None = Query(None, description="cell or district"),
                   limit: int = Query(100, ge=1, le=MAX_LIMIT)) -> Any:
        """Spike alerts, newest first, one per alert_id (see streams/alerts.py)."""
        try:
            return list_alerts(store, parse_since(since) if since else None, kind, area_type, limit)
        except QueryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    return router

"""HTTP routes for harm and warrant priorities: /v1/harm, /v1/gap, /v1/priorities(.csv|.html)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse

from hotspots.periods import LONDON
from sinks.harm import gap, harm
from sinks.priorities import priorities
from sinks.priorities_pack import priorities_csv, priorities_html
from sinks.queries import QueryError
from sinks.store import Store

LIMIT = Query(20, ge=1, le=1000)


def today() -> date:
    return datetime.now(LONDON).date()


def priorities_router(store: Store) -> APIRouter:
    router = APIRouter()

    def guarded(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @router.get("/v1/harm")
    def get_harm(period: str, start: date, res: int = 8, proactive: bool = True) -> Any:
        """Recorded crime weighted by harm-days (sinks.harm) per cell in one week or month."""
        return guarded(lambda: harm(store, period, start, res, proactive))

    @router.get("/v1/gap")
    def get_gap(period: str, start: date, res: int = 8, proactive: bool = True) -> Any:
        """Harm rank against enforcement rank per cell; positive gap = under-enforced."""
        return guarded(lambda: gap(store, period, start, res, proactive))

    def ranked(as_of: date | None, limit: int) -> tuple[date, list[dict[str, Any]]]:
        day = as_of or today()
        return day, guarded(lambda: priorities(store, day, limit))

    @router.get("/v1/priorities")
    def get_priorities(as_of: date | None = None, limit: int = LIMIT) -> Any:
        return ranked(as_of, limit)[1]

    @router.get("/v1/priorities.csv")
    def get_priorities_csv(as_of: date | None = None, limit: int = LIMIT) -> PlainTextResponse:
        return PlainTextResponse(priorities_csv(ranked(as_of, limit)[1]), media_type="text/csv")

    @router.get("/v1/priorities.html")
    def get_priorities_html(as_of: date | None = None, limit: int = LIMIT) -> HTMLResponse:
        day, rows = ranked(as_of, limit)
        return HTMLResponse(priorities_html(rows, day))

    return router

"""The HTTP query API. It runs in the sink's process because chDB allows one process per store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

from hotspots import __version__
from hotspots.periods import parse_iso_week
from sinks import queries
from sinks.gistar import gistar
from sinks.reconcile import reconcile
from sinks.store import Store


def build_api(store: Store, health: Callable[[], dict[str, Any]]) -> FastAPI:
    api = FastAPI(title="hotspots", version=__version__)

    def guarded(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (queries.QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @api.get("/health")
    def get_health() -> JSONResponse:
        state = health()
        return JSONResponse(state, status_code=200 if state.get("ok") else 503)

    @api.get("/v1/summary")
    def get_summary(start: date = Query(alias="from"), end: date = Query(alias="to")) -> Any:
        return guarded(lambda: queries.summary(store, start, end))

    @api.get("/v1/cells")
    def get_cells(start: date = Query(alias="from"), end: date = Query(alias="to"),
                  res: int = 8, period: str = "week", kind: str | None = None) -> Any:
        return guarded(lambda: queries.cells(store, start, end, res, period, kind))

    @api.get("/v1/top")
    def get_top(week: str, kind: str, res: int = 8, limit: int = Query(10, ge=1, le=1000)) -> Any:
        return guarded(lambda: queries.top(store, parse_iso_week(week), kind, res, limit))

    @api.get("/v1/dlq")
    def get_dlq(samples: int = Query(3, ge=0, le=100)) -> Any:
        return guarded(lambda: queries.dead_letters(store, samples))

    @api.get("/v1/gistar")
    def get_gistar(period: str, start: date, kind: str, res: int = 8, k: int = 1) -> Any:
        return guarded(lambda: gistar(store, period, start, kind, res, k))

    @api.get("/v1/reconcile")
    def get_reconcile(start: date | None = Query(None, alias="from"),
                      end: date | None = Query(None, alias="to")) -> Any:
        """Rollups recomputed from the raw events and compared with the stored ones."""
        return guarded(lambda: reconcile(store, start, end))

    return api

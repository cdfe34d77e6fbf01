"""The live map: the page at /, its built assets under /static, and the small APIs it needs.

The page (web/, built into sinks/static/ and committed) needs no Node at run time and no
internet: no map tiles, only hexagons and optional district outlines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import h3
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from hotspots.contract import KINDS
from hotspots.geo import RESOLUTIONS, to_int
from sinks.queries import QueryError
from sinks.store import Store

STATIC = Path(__file__).resolve().parent / "static"
MAP_PERIODS = ("week", "month")


def periods(store: Store, period: str, res: int = 8, kind: str | None = None,
            limit: int = 520) -> list[str]:
    """Starts of the periods with any rollup row, latest first."""
    if period not in MAP_PERIODS:
        raise QueryError(f"period {period!r} not supported; choose one of {MAP_PERIODS}")
    if res not in RESOLUTIONS:
        raise QueryError(f"resolution {res} not kept; choose one of {sorted(RESOLUTIONS)}")
    if kind is not None and kind not in KINDS:
        raise QueryError(f"kind {kind!r} unknown; choose one of {KINDS}")
    rows = store.query(
        """SELECT DISTINCT period_start FROM {db}.rollups FINAL
           WHERE period = %(period)s AND res = %(res)s AND count > 0
             AND (%(kind)s = '' OR kind = %(kind)s)
           ORDER BY period_start DESC LIMIT %(limit)s""",
        {"period": period, "res": res, "kind": kind or "", "limit": int(limit)})
    return [r["period_start"].isoformat() for r in rows]


def cell_class(store: Store, cell: str, kind: str, res: int | None = None) -> dict[str, Any]:
    """The cell's most recent stored emerging-hot-spot class (sinks.ehsa) for ``kind``, and the
    week it was computed for; ``{"class": None, "week_start": None}`` when none is stored."""
    try:
        cell_id = to_int(cell)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    cell_res = h3.get_resolution(cell)
    if res is None:
        res = cell_res
    if res != cell_res:
        raise QueryError(f"{cell} is a resolution-{cell_res} cell, not {res}")
    if res not in RESOLUTIONS:
        raise QueryError(f"resolution {res} not kept; choose one of {sorted(RESOLUTIONS)}")
    if kind not in KINDS:
        raise QueryError(f"kind {kind!r} unknown; choose one of {KINDS}")
    rows = store.query(
        """SELECT argMax(class, week_start) AS latest, max(week_start) AS latest_week
           FROM {db}.ehsa_classes FINAL
           WHERE res = %(res)s AND kind = %(kind)s AND cell = %(cell)s GROUP BY cell""",
        {"res": res, "kind": kind, "cell": cell_id})
    base = {"cell": cell, "kind": kind, "res": res}
    if not rows:
        return {**base, "class": None, "week_start": None}
    return {**base, "class": rows[0]["latest"], "week_start": rows[0]["latest_week"].isoformat()}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, sort_keys=True)}\n\n"


async def stream_events(health: Callable[[], dict[str, Any]], interval: float = 0.5,
                        max_seconds: float = 60.0) -> AsyncIterator[str]:
    """Server-Sent Events: `hello` at once, then `update` whenever the sink has flushed another
    batch. The stream ends after max_seconds (EventSource reconnects after `retry`), so an open
    page never holds up the server's shutdown for long."""
    def batches() -> Any:
        state = health()
        return state.get("batches"), state.get("rows")

    last = batches()
    yield "retry: 1000\n" + _sse("hello", {"batches": last[0], "rows": last[1]})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    while loop.time() < deadline:
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
        now = batches()
        if now != last:
            last = now
            yield _sse("update", {"batches": now[0], "rows": now[1]})
        else:
            yield ": keep-alive\n\n"


def web_router(store: Store, health: Callable[[], dict[str, Any]]) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        page = STATIC / "index.html"
        if not page.is_file():
            raise HTTPException(status_code=404, detail="the map is not built: run `make web`")
        return FileResponse(page, media_type="text/html")

    @router.get("/v1/periods")
    def get_periods(period: str = "week", res: int = 8, kind: str | None = None,
                    limit: int = Query(520, ge=1, le=10_000)) -> Any:
        """Starts of the weeks or months with data, latest first (the map's period picker)."""
        try:
            starts = periods(store, period, res, kind, limit)
        except QueryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return {"period": period, "res": res, "starts": starts, "kinds": list(KINDS)}

    @router.get("/v1/cells/{cell}/class")
    def get_cell_class(cell: str, kind: str = "arrest", res: int | None = None) -> Any:
        """The cell's latest stored emerging-hot-spot class ({"class": null} when none)."""
        try:
            return cell_class(store, cell, kind, res)
        except QueryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @router.get("/v1/stream")
    def get_stream(max_seconds: float = Query(60.0, gt=0, le=3600)) -> StreamingResponse:
        """text/event-stream: `update` each time the sink flushes new rows."""
        return StreamingResponse(stream_events(health, 0.5, max_seconds),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/v1/boundaries.geojson")
    def get_boundaries() -> Any:
        """The HOTSPOTS_BOUNDARIES district outlines as GeoJSON (no features when it is unset)."""
        from hotspots.settings import SinkSettings

        path = SinkSettings().boundaries
        if path is None:
            return JSONResponse({"type": "FeatureCollection", "features": []},
                                media_type="application/geo+json")
        from sinks import gis

        try:
            frame = gis.load_districts(path)
        except gis.BoundaryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return JSONResponse(json.loads(frame.to_json(drop_id=True)),
                            media_type="application/geo+json")

    return router


def install_web(api: FastAPI, store: Store, health: Callable[[], dict[str, Any]]) -> None:
    """Add the map's routes to ``api`` and serve the built assets under /static."""
    api.include_router(web_router(store, health))
    api.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

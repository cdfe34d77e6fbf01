"""The HTTP query API. It runs in the sink's process because chDB allows one process per store."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hotspots import __version__
from hotspots.periods import parse_iso_week
from sinks import privacy, queries
from sinks.alerts_api import alerts_router
from sinks.audit import AuditLog
from sinks.auth import AUTHORIZE, Access, install_access
from sinks.ehsa_api import ehsa_router
from sinks.gistar import gistar
from sinks.priorities_api import priorities_router
from sinks.reconcile import reconcile
from sinks.store import Store
from sinks.trends import change, drill, smoothed
from sinks.web import install_web


def build_api(store: Store, health: Callable[[], dict[str, Any]],
              transitions_publisher: Callable[[], Callable[[dict[str, Any]], None]] | None = None,
              access: Access | None = None, audit: AuditLog | None = None) -> FastAPI:
    # Every route, whichever router adds it, passes sinks.auth's policy (default: read scope).
    api = FastAPI(title="hotspots", version=__version__, dependencies=AUTHORIZE)
    install_access(api, store, access, audit)  # /v1/session, /v1/tokens, /v1/audit; the audit log
    api.include_router(ehsa_router(store, transitions_publisher))  # /v1/ehsa, /v1/ehsa/update
    api.include_router(priorities_router(store))  # /v1/harm, /v1/gap, /v1/priorities[.csv|.html]
    api.include_router(alerts_router(store))  # /v1/alerts: spike alerts
    install_web(api, store, health)  # the live map: /, /static, /v1/periods, /v1/stream

    def guarded(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (queries.QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @api.get("/health")
    def get_health() -> JSONResponse:
        state = health()
        return JSONResponse(state, status_code=200 if state.get("ok") else 503)

    @api.get("/metrics", include_in_schema=False)
    def get_metrics() -> Response:
        """Prometheus exposition of the process's metrics (hotspots.metrics), for scraping.

        A plain route rather than a mounted make_asgi_app(): a mount answers /metrics with a
        redirect to /metrics/.
        """
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/summary")
    def get_summary(start: date = Query(alias="from"), end: date = Query(alias="to")) -> Any:
        return guarded(lambda: queries.summary(store, start, end))

    def released_cells(start: date, end: date, res: int, period: str, kind: str | None,
                       tier: str) -> dict[str, Any]:
        guarded(lambda: privacy.check_tier(tier, res))  # before reading anything
        rows = guarded(lambda: queries.cells(store, start, end, res, period, kind))
        return privacy.release_cells(rows, tier, res)

    @api.get("/v1/cells")
    def get_cells(start: date = Query(alias="from"), end: date = Query(alias="to"),
                  res: int = 8, period: str = "week", kind: str | None = None,
                  tier: privacy.Tier = "analyst") -> Any:
        """Counts per cell. tier=partner|public (sinks.privacy): an object stating the tier and
        its disclosure control, with the released rows and a total per period and kind."""
        release = released_cells(start, end, res, period, kind, tier)
        return release["rows"] if tier == "analyst" else release

    @api.get("/v1/cells.geojson")
    def get_cells_geojson(start: date = Query(alias="from"), end: date = Query(alias="to"),
                          res: int = 8, period: str = "week", kind: str | None = None,
                          tier: privacy.Tier = "analyst") -> Any:
        """/v1/cells as a GeoJSON FeatureCollection of hexagons (EPSG:4326), stating its tier."""
        from sinks import gis  # geopandas only loads when a GIS view is asked for

        release = released_cells(start, end, res, period, kind, tier)
        return JSONResponse(gis.feature_collection(gis.cells_frame(release["rows"]),
                                                   gis.release_meta(release)),
                            media_type="application/geo+json")

    @api.get("/v1/districts")
    def get_districts(period: str, start: date, kind: str, res: int = 8,
                      tier: privacy.Tier = "analyst") -> Any:
        """Counts per district of the HOTSPOTS_BOUNDARIES outlines (400 when it is unset).
        tier=partner|public: an object with the tier, the rule, the rows and the total."""
        from hotspots.settings import SinkSettings
        from sinks import gis

        guarded(lambda: privacy.check_tier(tier, res))
        rows = guarded(lambda: gis.district_rollup(store, SinkSettings().boundaries, period, start,
                                                   kind, res))
        return rows if tier == "analyst" else privacy.release_districts(rows, tier, res)

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

    @api.get("/v1/change")
    def get_change(period: str, start: date, kind: str, res: int = 8, mode: str = "pop",
                   limit: int | None = Query(None, ge=1, le=10_000)) -> Any:
        return guarded(lambda: change(store, period, start, kind, res, mode, limit))

    @api.get("/v1/smoothed")
    def get_smoothed(period: str, start: date, kind: str, res: int = 8, k: int = 1,
                     limit: int | None = Query(None, ge=1, le=10_000)) -> Any:
        return guarded(lambda: smoothed(store, period, start, kind, res, k, limit))

    @api.get("/v1/events")
    def get_events(cell: str, period: str, start: date, kind: str | None = None,
                   limit: int = Query(100, ge=1, le=10_000)) -> Any:
        """The raw events behind one cell and period (the drill-down)."""
        return guarded(lambda: drill(store, cell, period, start, kind, limit))

    return api


def openapi_json() -> str:
    """The OpenAPI document as stable text; building it needs no store."""
    spec = build_api(None, lambda: {"ok": True}).openapi()  # type: ignore[arg-type]
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"

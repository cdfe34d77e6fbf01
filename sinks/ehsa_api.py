"""HTTP routes of the emerging hot spot analysis: GET /v1/ehsa, POST /v1/ehsa/update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from hotspots.periods import parse_iso_week
from hotspots.settings import SinkSettings
from sinks.ehsa import (
    MAX_WEEKS,
    MIN_WEEKS,
    Publish,
    TransitionPublishError,
    ehsa,
    kafka_publisher,
    update_classes,
)
from sinks.queries import QueryError
from sinks.store import Store

WEEKS = Query(12, ge=MIN_WEEKS, le=MAX_WEEKS)


def ehsa_router(store: Store, publisher: Callable[[], Publish] | None = None) -> APIRouter:
    """``publisher`` makes one transitions publisher per update (default: Kafka, SinkSettings())."""
    router = APIRouter()
    make = publisher or (lambda: kafka_publisher(SinkSettings()))

    @router.get("/v1/ehsa")
    def get_ehsa(week: str, kind: str, res: int = 8, weeks: int = WEEKS, k: int = 1) -> Any:
        try:
            return ehsa(store, parse_iso_week(week), kind, res, weeks, k)
        except (QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @router.post("/v1/ehsa/update")
    def post_update(week: str, kind: str, res: int = 8, weeks: int = WEEKS, k: int = 1) -> Any:
        """Store the week's classes and publish each class change to the transitions topic."""
        publish = make()
        try:
            return update_classes(store, parse_iso_week(week), kind, res, weeks, k, publish)
        except (QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except TransitionPublishError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        finally:
            close = getattr(publish, "close", None)
            if callable(close):
                close()

    return router

"""The published OpenAPI document is the API's own."""

from __future__ import annotations

from pathlib import Path

from sinks.api import openapi_json

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_published_openapi_is_current() -> None:
    assert PUBLISHED.read_text() == openapi_json(), (
        "the API changed: run `hotspots openapi --out docs/openapi.json` and commit it")
